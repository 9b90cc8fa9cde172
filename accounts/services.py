"""Writes for accounts: registration and API keys."""
from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework.exceptions import ValidationError

from accounts.models import ApiKey, User

KEY_PREFIX = "jk_"


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class CreatedApiKey:
    api_key: ApiKey
    key: str  # shown once, never stored


def user_register(*, username: str, email: str, password: str) -> User:
    """Create a user; raise ValidationError naming the field for a taken name or weak password."""
    if User.objects.filter(username__iexact=username).exists():
        raise ValidationError({"username": ["A user with that username already exists."]})
    candidate = User(username=username, email=email)
    try:
        validate_password(password, user=candidate)
    except DjangoValidationError as exc:
        raise ValidationError({"password": list(exc.messages)}) from None
    candidate.set_password(password)
    try:
        with transaction.atomic():
            candidate.save()
    except IntegrityError:
        raise ValidationError({"username": ["A user with that username already exists."]}) from None
    return candidate


def api_key_create(*, user: User, name: str) -> CreatedApiKey:
    """Create an API key for `user` and return it with the clear key, which is not kept."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    api_key = ApiKey.objects.create(
        user=user, name=name, prefix=key[: len(KEY_PREFIX) + 8], hashed_key=hash_api_key(key)
    )
    return CreatedApiKey(api_key=api_key, key=key)


def api_key_revoke(*, api_key: ApiKey) -> None:
    """Revoke a key: it stops authenticating at once and leaves the listing."""
    api_key.revoked_at = timezone.now()
    api_key.save(update_fields=["revoked_at", "updated_at"])
