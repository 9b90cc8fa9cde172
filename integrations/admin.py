"""Admin for integrations: list, search, rename and delete. Secrets are never displayed.

The form holds only the name; credentials are shown masked (`masked_credentials`) and the
encrypted column is not part of the page at all. New credentials go through the API, which
validates them against the provider's fields.
"""
from __future__ import annotations

import json

from django import forms
from django.contrib import admin
from django.utils.html import format_html

from integrations import services
from integrations.models import Integration


class IntegrationAdminForm(forms.ModelForm):
    class Meta:
        model = Integration
        fields = ["name"]

    def clean_name(self) -> str:
        name = self.cleaned_data["name"]
        taken = Integration.objects.filter(user_id=self.instance.user_id, end_user_id=self.instance.end_user_id,
                                           name=name).exclude(pk=self.instance.pk)
        if taken.exists():
            raise forms.ValidationError("This user already has an integration with this name.")
        return name


@admin.register(Integration)
class IntegrationAdmin(admin.ModelAdmin):
    form = IntegrationAdminForm
    list_display = ["name", "provider", "user", "end_user", "created_at", "updated_at"]
    list_filter = ["provider", ("end_user", admin.EmptyFieldListFilter)]
    search_fields = ["name", "user__username", "end_user__email"]
    list_select_related = ["user", "end_user"]
    fields = ["name", "provider", "user", "end_user", "credentials", "created_at", "updated_at"]
    readonly_fields = ["provider", "user", "end_user", "credentials", "created_at", "updated_at"]

    def has_add_permission(self, request) -> bool:
        return False  # credentials are entered through the API, where the provider validates them

    @admin.display(description="Credentials (secrets masked)")
    def credentials(self, obj: Integration) -> str:
        shown = json.dumps(services.masked_credentials(obj), indent=2, sort_keys=True)
        return format_html("<pre>{}</pre>", shown)

    def save_model(self, request, obj: Integration, form, change: bool) -> None:
        services.integration_update(integration=obj, name=form.cleaned_data["name"])

    def delete_model(self, request, obj: Integration) -> None:
        services.integration_delete(integration=obj)
