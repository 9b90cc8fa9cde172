from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin

from accounts import services
from accounts.models import ApiKey, User


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
