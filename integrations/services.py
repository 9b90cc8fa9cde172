"""Writes for integrations, and the one place where credentials are decrypted."""
from __future__ import annotations

from typing import Any

from cryptography.fernet import InvalidToken
from django.db import IntegrityError, transaction
from rest_framework.exceptions import ValidationError

from accounts.models import User
from config.errors import ApiError
from integrations.encryption import DecryptionError, decrypt_json, encrypt_json, rotate
from integrations.models import Integration
from integrations.providers import Provider, UnknownProvider, providers

SECRET_MASK = "********"


def _provider(key: str) -> Provider:
    try:
        return providers.get(key)
    except UnknownProvider as exc:
        raise ValidationError({"provider": [str(exc)]}) from None


def _split(provider: Provider, credentials: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    public = {k: v for k, v in credentials.items() if k not in provider.secret_fields}
    secret = {k: v for k, v in credentials.items() if k in provider.secret_fields}
    return public, secret


def _save(integration: Integration) -> Integration:
    try:
        with transaction.atomic():
            integration.save()
    except IntegrityError:
        raise ValidationError({"name": ["You already have an integration with this name."]}) from None
    return integration


def integration_create(
    *, user: User, name: str, provider: str, credentials: dict[str, Any], end_user=None,
) -> Integration:
    """Create an integration; raise ValidationError naming each bad credential field.

    With `end_user` it is that end user's own account (`user` must be their app's owner):
    tasks of their sessions that name no integration use it (docs/end-users.md).
    """
    if end_user is not None and end_user.app.owner_id != user.pk:
        raise ValueError("an end user's integration belongs to their app's owner")
    spec = _provider(provider)
    problems = spec.check_credentials(credentials)
    if problems:
        raise ValidationError(problems)
    public, secret = _split(spec, credentials)
    return _save(
        Integration(user=user, end_user=end_user, name=name, provider=provider, config=public,
                    secrets_encrypted=encrypt_json(secret))
    )


def integration_update(
    *, integration: Integration, name: str | None = None, credentials: dict[str, Any] | None = None
) -> Integration:
    """Rename and/or merge new credential values over the stored ones (the provider is fixed)."""
    if name is not None:
        integration.name = name
    if credentials is not None:
        spec = _provider(integration.provider)
        problems = spec.check_credentials(credentials, partial=True)
        if problems:
            raise ValidationError(problems)
        public, secret = _split(spec, credentials)
        _check_rebinding(integration, spec, public, secret)
        integration.config = {**integration.config, **public}
        if secret:
            try:
                stored = decrypt_json(integration.secrets_encrypted)
            except DecryptionError:
                if set(secret) != spec.secret_fields:
                    raise ApiError(
                        "The stored secrets cannot be decrypted with the server's keys: "
                        "send every secret field again.",
                        code="secrets_unreadable", status_code=409,
                        details={f"credentials.{name}": ["Required to replace unreadable secrets."]
                                 for name in sorted(spec.secret_fields - set(secret))},
                    ) from None
                stored = {}
            integration.secrets_encrypted = encrypt_json({**stored, **secret})
    return _save(integration)


def _check_rebinding(integration: Integration, spec: Provider, public: dict[str, Any], secret: dict[str, Any]) -> None:
    """Refuse to move stored secrets to a new destination unless they are sent again.

    Changing a field that decides where the secrets go (`ProviderField.destination`: an SMTP
    host, port or TLS) with the old secrets kept would let whoever can edit the integration (a
    stolen session, a shared account) send them to a server of their choosing and read them
    there. So the secrets that are stored must come with the change; their new values may be the
    old ones. Raises ApiError 400 `secrets_required` naming each missing field.
    """
    defaults = {f.name: f.default for f in spec.fields}
    moved = sorted(
        name for name in spec.destination_fields
        if name in public and public[name] != integration.config.get(name, defaults.get(name))
    )
    if not moved:
        return
    try:
        stored = {name for name, value in decrypt_json(integration.secrets_encrypted).items() if value}
    except DecryptionError:
        stored = set(spec.secret_fields)  # unreadable: every one of them must be sent anyway
    missing = sorted((stored & spec.secret_fields) - set(secret))
    if missing:
        raise ApiError(
            f"Changing {', '.join(moved)} changes where this integration's secrets are sent: "
            f"send {', '.join(missing)} again with the change.",
            code="secrets_required",
            details={f"credentials.{name}": [f"Required when {', '.join(moved)} change(s)."] for name in missing},
        )


def integration_delete(*, integration: Integration) -> None:
    integration.delete()


def integration_credentials(*, integration: Integration) -> dict[str, Any]:
    """Return every credential in clear, defaults filled in: only for building a client."""
    spec = providers.get(integration.provider)
    values = {f.name: f.default for f in spec.fields if f.default is not None}
    return {**values, **integration.config, **decrypt_json(integration.secrets_encrypted)}


def masked_credentials(integration: Integration) -> dict[str, Any]:
    """Return the credentials as the API shows them: secrets replaced by a fixed mask."""
    spec = providers.get(integration.provider)
    shown = dict(integration.config)
    for name in sorted(spec.secret_fields):
        shown[name] = SECRET_MASK
    return shown


@transaction.atomic
def integration_rotate_keys() -> int:
    """Re-encrypt every integration's secrets with the first configured key; return the count.

    Locks the rows so that a concurrent update cannot be overwritten with stale secrets. Raises
    DecryptionError (and changes nothing) if a row cannot be decrypted with any configured key.
    """
    count = 0
    for integration in Integration.objects.select_for_update().exclude(secrets_encrypted="").iterator():
        try:
            integration.secrets_encrypted = rotate(integration.secrets_encrypted)
        except InvalidToken:
            raise DecryptionError(f"the secrets of integration {integration.id} cannot be decrypted") from None
        integration.save(update_fields=["secrets_encrypted", "updated_at"])
        count += 1
    return count
