"""Owner scoping for every viewset: a user only ever reaches their own objects.

Viewsets set `owned_queryset(user)` and never filter by owner themselves. Another user's
object is therefore simply not found (404), so its existence does not leak.

A run key limited to chosen interactions (accounts.permissions) narrows it further: a viewset
that a run key may reach names the field that leads to an interaction in
`key_interaction_field`, and everything of another interaction is not found either.
"""
from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from accounts.permissions import run_key
from config.json_input import UUID


class OwnedQuerysetMixin:
    """Scope `get_queryset()` to the requesting user through `owned_queryset`."""

    key_interaction_field: str | None = None
    # Ids are UUIDs in their canonical form: anything else is no route (404), as the OpenAPI
    # document's `format: uuid` says.
    lookup_value_regex = UUID.pattern.removeprefix("^").removesuffix("$")
    request: Any  # the view's (a DRF Request)

    def owned_queryset(self, user) -> QuerySet:  # pragma: no cover - abstract
        raise NotImplementedError

    def get_queryset(self) -> QuerySet:
        found = self.owned_queryset(self.request.user)
        key = run_key(self.request)
        if key is not None and key.limited:
            if self.key_interaction_field is None:
                return found.none()
            # A subquery: no extra round trip.
            found = found.filter(**{f"{self.key_interaction_field}__in": key.interactions.values("pk")})
        return found
