"""Encryption of secrets at rest: the one place that encrypts and decrypts credentials.

Keys come from JUNCTION_ENCRYPTION_KEYS (comma-separated Fernet keys). The first key
encrypts; every key decrypts. To rotate: put a new key first, keep the old ones after it, run
`python manage.py rotate_encryption_keys`, then drop the old keys.
"""
from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


class DecryptionError(Exception):
    """A stored secret could not be decrypted with any configured key."""


@lru_cache(maxsize=4)
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    try:
        return MultiFernet([Fernet(key.encode()) for key in keys])
    except (ValueError, TypeError):
        raise ImproperlyConfigured(
            "JUNCTION_ENCRYPTION_KEYS must hold Fernet keys (32 url-safe base64-encoded bytes)"
        ) from None


def fernet() -> MultiFernet:
    return _fernet(tuple(settings.JUNCTION_ENCRYPTION_KEYS))


def encrypt_json(data: dict[str, Any]) -> str:
    return fernet().encrypt(json.dumps(data, sort_keys=True).encode()).decode()


def decrypt_json(token: str) -> dict[str, Any]:
    """Decrypt a token made by `encrypt_json`; raise DecryptionError if no key fits."""
    if not token:
        return {}
    try:
        return json.loads(fernet().decrypt(token.encode()))
    except InvalidToken:
        raise DecryptionError("stored secrets cannot be decrypted with the configured keys") from None


def rotate(token: str) -> str:
    """Re-encrypt `token` with the first (current) key."""
    return fernet().rotate(token.encode()).decode() if token else token
