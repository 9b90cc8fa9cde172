"""Owner scoping for every viewset: a user only ever reaches their own objects.

Viewsets set `owned_queryset(user)` and never filter by owner themselves. Another user's
object is therefore simply not found (404), so its existence does not leak.
"""
from __future__ import annotations

from django.db.models import QuerySet


class OwnedQuerysetMixin:
    """Scope `get_queryset()` to the requesting user through `owned_queryset`."""

    def owned_queryset(self, user) -> QuerySet:  # pragma: no cover - abstract
        raise NotImplementedError

    def get_queryset(self) -> QuerySet:
        return self.owned_queryset(self.request.user)
