from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin

from accounts import app_services, services
from accounts.models import ApiKey, App, AppGroup, EndUser, Invitation, User


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    list_display = ["username", "email", "is_staff", "is_active", "created_at"]
    actions = ["deactivate"]

    def save_model(self, request, obj, form, change) -> None:
        super().save_model(request, obj, form, change)
        if change and "is_active" in form.changed_data and not obj.is_active:
            services.tokens_revoke(user=obj)  # as the service does: old tokens never come back

    @admin.action(description="Deactivate selected users (revokes their tokens)")
    def deactivate(self, request, queryset):
        users = list(queryset.filter(is_active=True))
        for user in users:
            services.user_set_active(user=user, active=False)
        self.message_user(request, f"Deactivated {len(users)} user(s).")


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Keys are created through the API (the clear key is shown once there); here they are
    listed and revoked. The hash is never displayed."""

    list_display = ["name", "prefix", "user", "scope", "expires_at", "last_used_at", "created_at", "revoked_at"]
    list_filter = ["scope", "revoked_at"]
    search_fields = ["name", "prefix", "user__username"]
    fields = ["user", "name", "prefix", "scope", "limited", "interactions", "expires_at", "last_used_at",
              "created_at", "revoked_at"]
    readonly_fields = ["user", "name", "prefix", "scope", "limited", "interactions", "last_used_at", "created_at"]
    actions = ["revoke"]

    def has_add_permission(self, request) -> bool:
        return False

    @admin.action(description="Revoke selected API keys")
    def revoke(self, request, queryset):
        live = list(queryset.filter(revoked_at__isnull=True))
        for api_key in live:
            services.api_key_revoke(api_key=api_key)
        self.message_user(request, f"Revoked {len(live)} key(s).")


# --- apps and end users (docs/end-users.md) --------------------------------------------------

class AppGroupInline(admin.TabularInline):
    model = AppGroup
    extra = 0
    fields = ["name", "is_default"]


@admin.register(App)
class AppAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "owner", "signup", "created_at"]
    list_filter = ["signup"]
    search_fields = ["slug", "name", "owner__username"]
    inlines = [AppGroupInline]

    def delete_model(self, request, obj) -> None:
        app_services.app_delete(app=obj)  # its interactions go back to owner-only first

    def delete_queryset(self, request, queryset) -> None:
        for app in queryset:
            app_services.app_delete(app=app)


@admin.register(EndUser)
class EndUserAdmin(admin.ModelAdmin):
    """Builders list, regroup and disable end users here; the password hash is never shown."""

    list_display = ["email", "app", "group", "is_active", "last_login_at", "created_at"]
    list_filter = ["is_active", "app", "group__name"]
    search_fields = ["email", "app__slug"]
    list_select_related = ["app", "group"]
    fields = ["app", "email", "group", "is_active", "last_login_at", "created_at"]
    readonly_fields = ["app", "email", "last_login_at", "created_at"]
    actions = ["disable", "enable"]

    def has_add_permission(self, request) -> bool:
        return False  # end users register themselves (or with an invitation)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "group":
            end_user_id = request.resolver_match.kwargs.get("object_id") if request.resolver_match else None
            app_id = EndUser.objects.filter(pk=end_user_id).values_list("app_id", flat=True).first()
            kwargs["queryset"] = AppGroup.objects.filter(app_id=app_id)  # only the groups of its app
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(self, request, obj, form, change) -> None:
        app_services.end_user_update(
            end_user=obj, group=obj.group.name if "group" in form.changed_data else None,
            is_active=obj.is_active if "is_active" in form.changed_data else None,
        )

    @admin.action(description="Disable selected end users (revokes their tokens)")
    def disable(self, request, queryset):
        users = list(queryset.filter(is_active=True).select_related("app"))
        for end_user in users:
            app_services.end_user_update(end_user=end_user, is_active=False)
        self.message_user(request, f"Disabled {len(users)} end user(s).")

    @admin.action(description="Enable selected end users")
    def enable(self, request, queryset):
        users = list(queryset.filter(is_active=False).select_related("app"))
        for end_user in users:
            app_services.end_user_update(end_user=end_user, is_active=True)
        self.message_user(request, f"Enabled {len(users)} end user(s).")


@admin.register(Invitation)
class InvitationAdmin(admin.ModelAdmin):
    """Invite here: the token is shown once, in the message after saving (only its hash is kept)."""

    list_display = ["email", "app", "expires_at", "used_at", "created_at"]
    list_filter = ["app"]
    search_fields = ["email", "app__slug"]
    fields = ["app", "email", "expires_at", "used_at", "used_by"]
    readonly_fields = ["expires_at", "used_at", "used_by"]

    def get_readonly_fields(self, request, obj=None):
        return [*self.readonly_fields, "app", "email"] if obj else self.readonly_fields

    def save_model(self, request, obj, form, change) -> None:
        if change:
            return
        created = app_services.invitation_create(app=obj.app, email=obj.email)
        obj.pk, obj.expires_at, obj.hashed_token = created.invitation.pk, created.invitation.expires_at, ""
        obj._state.adding = False
        self.message_user(request, f"Invitation token for {obj.email} (shown once): {created.token}")
