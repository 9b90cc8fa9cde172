"""Reads for accounts."""
from __future__ import annotations

from django.db.models import Q, QuerySet
from django.utils import timezone

from accounts.models import ApiKey, User
from accounts.services import hash_api_key


def api_key_list(*, user: User) -> QuerySet[ApiKey]:
    return ApiKey.objects.filter(user=user, revoked_at__isnull=True).prefetch_related("interactions")


def api_key_authenticate(*, key: str | None = None, hashed_key: str | None = None) -> ApiKey | None:
    """Return the live (unrevoked, unexpired) key matching `key` (or its hash), with its user, or None."""
    return (
        ApiKey.objects.select_related("user")
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=timezone.now()),
                hashed_key=hashed_key or hash_api_key(key or ""), revoked_at__isnull=True, user__is_active=True)
        .first()
    )
