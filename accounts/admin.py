"""Admin for users and API keys (docs/admin.md).

API keys are created here as through the API: `api_key_create` checks scope, interactions and
expiry, the clear key is shown once on the page that answers the creation (never stored, not
even in a message), only its hash is kept. Keys are then read-only; revoking keeps the row.
"""
from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers, widgets
from django.contrib.admin.utils import unquote
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.core.exceptions import PermissionDenied
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
)
from django.template.response import TemplateResponse
from django.urls import path, reverse

from accounts import app_services, services
from accounts.admin_scoping import OwnerScopedAdmin, sees_everything
from accounts.models import ApiKey, App, AppGroup, EndUser, Invitation, User
from config.errors import DomainError
from config.form_errors import add_service_errors


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    list_display = ["username", "email", "is_staff", "is_active", "created_at"]
    actions = ["deactivate"]

    def get_queryset(self, request: HttpRequest):
        found = super().get_queryset(request)
        # A builder given access to users (not by default: docs/admin.md) reaches only themselves.
        return found if sees_everything(request) else found.filter(pk=request.user.pk)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None):
        if sees_everything(request):
            return super().get_readonly_fields(request, obj)
        return ["is_active", "is_staff", "is_superuser", "groups", "user_permissions", "plan", "last_login",
                "date_joined"]

    def save_model(self, request, obj, form, change) -> None:
        super().save_model(request, obj, form, change)
        if change and "is_active" in form.changed_data and not obj.is_active:
            services.tokens_revoke(user=obj)  # as the service does: old tokens never come back

    @admin.action(description="Deactivate selected users (revokes their tokens)", permissions=["change"])
    def deactivate(self, request, queryset):
        users = list(queryset.filter(is_active=True))
        for user in users:
            services.user_set_active(user=user, active=False)
        self.message_user(request, f"Deactivated {len(users)} user(s).")


def _name(interaction: Any) -> str:
    return interaction.name


def _name_and_owner(interaction: Any) -> str:
    return f"{interaction.name} ({interaction.user.username})"


class ApiKeyForm(forms.Form):
    """What `POST /api/auth/api-keys/` takes; the owner too when a superuser creates it."""

    name = forms.CharField(max_length=100)
    scope = forms.ChoiceField(choices=ApiKey.Scope.choices, initial=ApiKey.Scope.FULL)
    interactions: forms.ModelMultipleChoiceField = forms.ModelMultipleChoiceField(
        queryset=None, required=False,  # set per owner in __init__
        help_text="Scope Run only: the key may run only these interactions. None chosen: every interaction.",
    )
    expires_at = forms.SplitDateTimeField(
        required=False, widget=widgets.AdminSplitDateTime, label="Expires at",
        help_text="After this time the key is refused. Empty: never.",
    )

    def __init__(self, *args: Any, owner: User | None, **kwargs: Any) -> None:
        from interactions.models import Interaction  # accounts is below interactions

        super().__init__(*args, **kwargs)
        choices = Interaction.objects.select_related("user").order_by("name")
        if owner is None:
            self.fields = {"user": forms.ModelChoiceField(User.objects.order_by("username"), label="Owner"),
                           **self.fields}
        else:
            choices = choices.filter(user=owner)
        chooser = self.fields["interactions"]
        assert isinstance(chooser, forms.ModelMultipleChoiceField)
        chooser.queryset = choices
        # An instance attribute, as Django's docs show (the stubs only know the method).
        chooser.label_from_instance = _name if owner is not None else _name_and_owner  # type: ignore[method-assign, assignment]


@admin.register(ApiKey)
class ApiKeyAdmin(OwnerScopedAdmin):
    """Keys: created here or through the API, then listed and revoked. The hash is never displayed."""

    list_display = ["name", "prefix", "user", "scope", "expires_at", "last_used_at", "created_at", "revoked_at"]
    list_filter = ["scope", "revoked_at"]
    search_fields = ["name", "prefix", "user__username"]
    list_select_related = ["user"]
    fields = readonly_fields = (  # a key does not change; it is revoked (the API has no update either)
        "user", "name", "prefix", "scope", "limited", "interactions", "expires_at", "last_used_at", "created_at",
        "revoked_at",
    )
    actions = ["revoke"]
    change_form_template = "admin/accounts/apikey/change_form.html"

    @admin.action(description="Revoke selected API keys", permissions=["change"])
    def revoke(self, request, queryset):
        live = list(queryset.filter(revoked_at__isnull=True))
        for api_key in live:
            services.api_key_revoke(api_key=api_key)
        self.message_user(request, f"Revoked {len(live)} key(s).")

    def get_urls(self):
        own = [path("<path:object_id>/revoke/", self.admin_site.admin_view(self.revoke_view),
                    name="accounts_apikey_revoke")]
        return own + super().get_urls()

    def revoke_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        api_key = self.get_object(request, unquote(object_id))
        if api_key is None:
            raise Http404("No such API key.")  # another builder's, as in the API
        if not self.has_change_permission(request, api_key):
            raise PermissionDenied
        if api_key.revoked_at is None:
            services.api_key_revoke(api_key=api_key)
            self.log_change(request, api_key, "Revoked.")
        self.message_user(request, f"Revoked {api_key}.", messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:accounts_apikey_change", args=[api_key.pk]))

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context: dict | None = None) -> HttpResponse:
        """Create a key through `api_key_create`; answer with the clear key, shown this once."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        owner = None if sees_everything(request) else request.user
        assert owner is None or isinstance(owner, User)  # the admin's users are logged in
        form = ApiKeyForm(request.POST if request.method == "POST" else None, owner=owner,
                          initial={"user": request.user.pk})
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            chosen = data["interactions"]
            try:
                created = services.api_key_create(
                    user=self.owner_for(request, data.get("user")), name=data["name"], scope=data["scope"],
                    interactions=[i.pk for i in chosen] if chosen else None, expires_at=data["expires_at"],
                )
            except DomainError as exc:
                add_service_errors(form, exc)
            else:
                self.log_addition(request, created.api_key, [{"added": {}}])
                return self._created(request, created)
        admin_form = helpers.AdminForm(
            form, [(None, {"fields": list(form.fields)})], {}, model_admin=self)  # type: ignore[arg-type]  # any form
        context = {
            **self.admin_site.each_context(request),
            "title": "Add API key",
            "subtitle": None,
            "adminform": admin_form,
            "object_id": None,
            "original": None,
            "is_popup": False,
            "to_field": None,
            "media": self.media + admin_form.media,
            "inline_admin_formsets": [],
            "errors": helpers.AdminErrorList(form, []),  # type: ignore[arg-type]  # any form works
            "preserved_filters": self.get_preserved_filters(request),
            "show_save_and_add_another": False,
            "show_save_and_continue": False,
        }
        return self.render_change_form(request, context, add=True, form_url=form_url)

    def _created(self, request: HttpRequest, created: services.CreatedApiKey) -> HttpResponse:
        context = {
            **self.admin_site.each_context(request),
            "title": f"API key {created.api_key.name} created",
            "opts": self.opts,
            "api_key": created.api_key,
            "key": created.key,
        }
        response = TemplateResponse(request, "admin/accounts/apikey/created.html", context)
        response["Cache-Control"] = "no-store"  # the one page that holds the clear key
        return response

# --- apps and end users (docs/end-users.md) --------------------------------------------------

class AppGroupInline(admin.TabularInline):
    model = AppGroup
    extra = 0
    fields = ["name", "is_default"]


@admin.register(App)
class AppAdmin(OwnerScopedAdmin):
    owner_field = "owner"
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
class EndUserAdmin(OwnerScopedAdmin):
    """Builders list, regroup and disable end users here; the password hash is never shown."""

    owner_field = "app__owner"
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
class InvitationAdmin(OwnerScopedAdmin):
    """Invite here: the token is shown once, in the message after saving (only its hash is kept)."""

    owner_field = "app__owner"
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
