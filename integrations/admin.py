"""Admin for integrations: create and edit them with the provider's own fields; secrets never shown.

Provider apps (the builder's own app registered with a provider, for OAuth) are listed, renamed
and deleted here with their secret masked; they are created through the API.

The add page first asks for the provider, then renders that provider's fields from its
`FieldSpec`s (the registry the API describes at `/api/providers/`): secret fields are
password inputs that are never filled in, not even after an error. Saving calls
`integration_create` / `integration_update`, so the admin checks credentials exactly as the
API does (the rule that a changed SMTP host needs the password again included), and their
errors appear on the field they name. The change page shows stored secrets only as the fixed
mask; a secret left blank keeps its stored value. The encrypted column is never part of a page.
"""
from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html

from accounts.admin_scoping import OwnerScopedAdmin, sees_everything
from accounts.models import User
from config.errors import DomainError
from config.form_errors import add_service_errors
from integrations import services
from integrations.models import Integration, ProviderApp
from integrations.providers import (
    MAX_CREDENTIAL_LENGTH,
    Provider,
    UnknownProvider,
    providers,
)
from tasks_catalog.fields import FieldSpec

CREDENTIAL_PREFIX = "credential_"


def _credential_field(spec: FieldSpec, *, editing: bool) -> forms.Field:
    """The form field for one provider field: its type, bounds, default; a secret is a password input."""
    label = spec.name.replace("_", " ").capitalize()
    if spec.type == "integer":
        return forms.IntegerField(label=label, required=spec.required and not editing, min_value=None if spec.minimum is None else int(spec.minimum),
                                  max_value=None if spec.maximum is None else int(spec.maximum), initial=spec.default,
                                  help_text="" if spec.required else f"Default: {spec.default}.")
    if spec.type == "boolean":
        return forms.BooleanField(label=label, required=False, initial=spec.default)
    if spec.secret:
        # render_value=False: a secret typed once is never sent back, even with the form's errors.
        help_text = "Secret: stored encrypted, never shown again."
        attrs = {"autocomplete": "new-password"}
        if editing:
            help_text = "Secret: leave blank to keep the stored value."
            attrs["placeholder"] = services.SECRET_MASK  # the API's mask: the same whatever the value
        return forms.CharField(label=label, required=spec.required and not editing, strip=False,
                               max_length=MAX_CREDENTIAL_LENGTH, help_text=help_text,
                               widget=forms.PasswordInput(render_value=False, attrs=attrs))
    return forms.CharField(label=label, required=spec.required, strip=False, max_length=MAX_CREDENTIAL_LENGTH,
                           initial=spec.default or None)


class IntegrationForm(forms.Form):
    """Name and credentials of one provider; `credentials()` is what the service takes."""

    provider: Provider
    editing: bool = False

    def __init__(self, *args: Any, provider: Provider, integration: Integration | None = None,
                 choose_owner: bool = False, **kwargs: Any) -> None:
        self.provider = provider
        self.integration = integration
        self.editing = integration is not None
        if integration is not None:
            stored = {f.name: f.default for f in provider.fields}
            stored.update(integration.config)  # never the secrets: they stay encrypted
            kwargs["initial"] = {
                "name": integration.name,
                **{CREDENTIAL_PREFIX + f.name: stored.get(f.name) for f in provider.fields if not f.secret},
                **(kwargs.get("initial") or {}),
            }
        super().__init__(*args, **kwargs)
        if choose_owner:
            self.fields["user"] = forms.ModelChoiceField(User.objects.order_by("username"), label="Owner")
        self.fields["name"] = forms.CharField(max_length=100)
        for spec in provider.fields:
            self.fields[CREDENTIAL_PREFIX + spec.name] = _credential_field(spec, editing=self.editing)

    def credentials(self) -> dict[str, Any]:
        """The credentials as the API would receive them.

        A new integration: every value given (an optional field left empty takes its default).
        An edit: only what changed, and the secrets typed in (blank ones keep their stored value).
        """
        given: dict[str, Any] = {}
        for spec in self.provider.fields:
            value = self.cleaned_data.get(CREDENTIAL_PREFIX + spec.name)
            if value is None or (value == "" and (spec.secret or not (spec.required or self.editing))):
                continue
            given[spec.name] = value
        if self.integration is None:
            return given
        stored = {f.name: f.default for f in self.provider.fields}
        stored.update(self.integration.config)
        return {name: value for name, value in given.items()
                if name in self.provider.secret_fields or stored.get(name) != value}

    @staticmethod
    def field_for(path: str) -> str:
        """The form field a service error's path names (`credentials.host` → `credential_host`)."""
        if path.startswith("credentials."):
            return CREDENTIAL_PREFIX + path.removeprefix("credentials.")
        return path


@admin.register(Integration)
class IntegrationAdmin(OwnerScopedAdmin):
    list_display = ["name", "provider", "user", "end_user", "provider_app", "account", "created_at", "updated_at"]
    list_filter = ["provider", ("end_user", admin.EmptyFieldListFilter)]
    search_fields = ["name", "user__username", "end_user__email", "account"]
    list_select_related = ["user", "end_user", "provider_app"]
    # What a user with the view permission only sees (read-only): the masked credentials.
    fields = ["name", "provider", "user", "end_user", "provider_app", "account", "credentials", "created_at",
              "updated_at"]
    readonly_fields = ["provider", "user", "end_user", "provider_app", "account", "credentials", "created_at",
                       "updated_at"]

    @admin.display(description="Credentials (secrets masked)")
    def credentials(self, obj: Integration) -> str:
        shown = json.dumps(services.masked_credentials(obj), indent=2, sort_keys=True)
        return format_html("<pre>{}</pre>", shown)

    def delete_model(self, request, obj: Integration) -> None:
        services.integration_delete(integration=obj)

    def delete_queryset(self, request, queryset) -> None:
        for integration in queryset:
            services.integration_delete(integration=integration)

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context: dict | None = None) -> HttpResponse:
        if not self.has_add_permission(request):
            raise PermissionDenied
        try:
            provider = providers.get(request.GET.get("provider", ""))
        except UnknownProvider:
            return self._choose_provider(request)
        return self._form_view(request, provider=provider, integration=None, form_url=form_url)

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "",
                    extra_context: dict | None = None) -> HttpResponse:
        integration = self.get_object(request, unquote(object_id))
        if integration is None or not self.has_change_permission(request, integration):
            return super().change_view(request, object_id, form_url, extra_context)  # not found, or read-only
        try:
            provider = providers.get(integration.provider)
        except UnknownProvider:  # a provider removed from the code: rename or delete only
            return super().change_view(request, object_id, form_url, extra_context)
        return self._form_view(request, provider=provider, integration=integration, form_url=form_url)

    def _choose_provider(self, request: HttpRequest) -> HttpResponse:
        context = {
            **self.admin_site.each_context(request),
            "title": "Add integration: choose a provider",
            "opts": self.opts,
            "providers": [
                {"key": p.key, "name": p.name, "fields": ", ".join(f.name for f in p.fields)} for p in providers
            ],
        }
        return TemplateResponse(request, "admin/integrations/integration/choose_provider.html", context)

    def _form_view(self, request: HttpRequest, *, provider: Provider, integration: Integration | None,
                   form_url: str) -> HttpResponse:
        """Render and save the add or change form through the integration services."""
        choose_owner = integration is None and sees_everything(request)
        form = IntegrationForm(request.POST if request.method == "POST" else None, provider=provider,
                               integration=integration, choose_owner=choose_owner,
                               initial={"user": request.user.pk} if choose_owner else None)
        if request.method == "POST" and form.is_valid():
            saved = self._save(request, form, provider, integration)
            if saved is not None:
                return self._after_save(request, saved, added=integration is None)
        credentials = [f for f in form.fields if f.startswith(CREDENTIAL_PREFIX)]
        fieldsets = [(None, {"fields": [f for f in form.fields if f not in credentials]}),
                     (f"{provider.name} credentials", {"fields": credentials})]
        admin_form = helpers.AdminForm(form, fieldsets, {}, model_admin=self)  # type: ignore[arg-type]  # any form works
        title = f"Add {provider.name} integration" if integration is None else f"Change {integration}"
        context = {
            **self.admin_site.each_context(request),
            "title": title,
            "subtitle": f"{provider.name}, owned by {integration.user.username}" if integration else None,
            "adminform": admin_form,
            "object_id": integration.pk if integration else None,
            "original": integration,
            "is_popup": False,
            "to_field": None,
            "media": self.media + admin_form.media,
            "inline_admin_formsets": [],
            "errors": helpers.AdminErrorList(form, []),  # type: ignore[arg-type]  # any form works
            "preserved_filters": self.get_preserved_filters(request),
            "show_save_and_add_another": integration is None,
        }
        return self.render_change_form(request, context, add=integration is None, change=integration is not None,
                                       obj=integration, form_url=form_url)

    def _save(self, request: HttpRequest, form: IntegrationForm, provider: Provider,
              integration: Integration | None) -> Integration | None:
        try:
            if integration is None:
                return services.integration_create(
                    user=self.owner_for(request, form.cleaned_data.get("user")), name=form.cleaned_data["name"],
                    provider=provider.key, credentials=form.credentials(),
                )
            return services.integration_update(
                integration=integration, name=form.cleaned_data["name"], credentials=form.credentials() or None,
            )
        except DomainError as exc:
            add_service_errors(form, exc, IntegrationForm.field_for)
            return None

    def _after_save(self, request: HttpRequest, integration: Integration, *, added: bool) -> HttpResponse:
        if added:
            self.log_addition(request, integration, [{"added": {}}])
        else:
            self.log_change(request, integration, [{"changed": {}}])
        self.message_user(request, f"{'Added' if added else 'Saved'} {integration}.", messages.SUCCESS)
        if "_continue" in request.POST:
            return HttpResponseRedirect(reverse("admin:integrations_integration_change", args=[integration.pk]))
        if "_addanother" in request.POST:
            return HttpResponseRedirect(
                f"{reverse('admin:integrations_integration_add')}?provider={integration.provider}")
        return HttpResponseRedirect(reverse("admin:integrations_integration_changelist"))


class ProviderAppAdminForm(forms.ModelForm):
    class Meta:
        model = ProviderApp
        fields = ["name"]

    def clean_name(self) -> str:
        name = self.cleaned_data["name"]
        taken = ProviderApp.objects.filter(user_id=self.instance.user_id, name=name).exclude(pk=self.instance.pk)
        if taken.exists():
            raise forms.ValidationError("This user already has a provider app with this name.")
        return name


@admin.register(ProviderApp)
class ProviderAppAdmin(OwnerScopedAdmin):
    form = ProviderAppAdminForm
    list_display = ["name", "provider", "user", "callback_url", "created_at", "updated_at"]
    list_filter = ["provider"]
    search_fields = ["name", "user__username"]
    list_select_related = ["user"]
    fields = ["name", "provider", "user", "credentials", "callback_url", "created_at", "updated_at"]
    readonly_fields = ["provider", "user", "credentials", "callback_url", "created_at", "updated_at"]

    def has_add_permission(self, request) -> bool:
        return False  # credentials are entered through the API, where the provider validates them

    @admin.display(description="Credentials (secrets masked)")
    def credentials(self, obj: ProviderApp) -> str:
        shown = json.dumps(services.provider_app_masked_credentials(obj), indent=2, sort_keys=True)
        return format_html("<pre>{}</pre>", shown)

    def save_model(self, request, obj: ProviderApp, form, change: bool) -> None:
        services.provider_app_update(provider_app=obj, name=form.cleaned_data["name"])

    def delete_model(self, request, obj: ProviderApp) -> None:
        services.provider_app_delete(provider_app=obj)

    def delete_queryset(self, request, queryset) -> None:
        for provider_app in queryset:
            services.provider_app_delete(provider_app=provider_app)
