"""Builders in the admin: owner scoping (their own objects only; a superuser sees all) and
the access a builder is given (`builder_admin_grant`, `manage.py grant_admin`).

The admin counterpart of `accounts.ownership` (the API's mixin). A ModelAdmin that lists
users' objects inherits `OwnerScopedAdmin` and names the path to the owner in `owner_field`;
`get_queryset` is then scoped, so every list, change page, action and custom admin view that
goes through `get_object` / `get_queryset` finds only the builder's objects (another user's
object is "not found", as in the API). On add forms a builder is the owner: the `user` field
is left out and set to them.
"""
from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest


def sees_everything(request: HttpRequest) -> bool:
    return bool(request.user.is_superuser)


class OwnerScopedAdmin(admin.ModelAdmin):
    """Scope the admin's queryset to `request.user` unless they are a superuser."""

    owner_field = "user"

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        found = super().get_queryset(request)
        if sees_everything(request):
            return found
        return found.filter(**{self.owner_field: request.user})

    def get_list_display(self, request: HttpRequest) -> Any:
        shown = list(super().get_list_display(request))
        if not sees_everything(request) and self.owner_field in shown:
            shown.remove(self.owner_field)  # always themselves
        return shown

    def owner_for(self, request: HttpRequest, chosen: Any = None) -> Any:
        """The owner of a new object: the chosen user for a superuser, else the builder."""
        return chosen if sees_everything(request) and chosen is not None else request.user


# What a builder may do in the admin: their interactions (and so their sessions' cancel and
# retry), integrations and API keys. Not users, not deleting keys (a key is revoked: the row
# stays for audits), not task runs beyond reading them on a session's page.
BUILDER_GROUP = "builders"
BUILDER_PERMISSIONS = {
    "interactions": ["view_interaction", "add_interaction", "change_interaction", "delete_interaction",
                     "view_session", "change_session", "view_taskrun"],
    "integrations": ["view_integration", "add_integration", "change_integration", "delete_integration"],
    "accounts": ["view_apikey", "add_apikey", "change_apikey"],
}


def builder_admin_grant(*, user: Any) -> None:
    """Let `user` into the admin as a builder: staff, in the `builders` group, which holds
    BUILDER_PERMISSIONS (created or brought up to date here). Owner scoping does the rest."""
    from django.contrib.auth.models import Group, Permission
    from django.db import transaction
    from django.db.models import Q

    with transaction.atomic():
        group, _ = Group.objects.get_or_create(name=BUILDER_GROUP)
        wanted = Q(pk__in=[])
        for app_label, codenames in BUILDER_PERMISSIONS.items():
            wanted |= Q(content_type__app_label=app_label, codename__in=codenames)
        group.permissions.set(Permission.objects.filter(wanted))
        user.is_staff = True
        user.save(update_fields=["is_staff", "updated_at"])
        user.groups.add(group)
