"""Owner scoping for the admin: a builder reaches only their own objects, a superuser all.

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
