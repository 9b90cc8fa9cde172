"""Writes for integrations and provider apps, and the one place where credentials are decrypted."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from cryptography.fernet import InvalidToken
from django.db import IntegrityError, transaction

from accounts.models import User
from config.errors import Conflict, InvalidInput
from integrations.encryption import DecryptionError, decrypt_json, encrypt_json, rotate
from integrations.models import Integration, OAuthState, ProviderApp
from integrations.providers import (
    CREDENTIALS,
    Provider,
    UnknownProvider,
    providers,
)
from tasks_catalog.fields import FieldSpec

SECRET_MASK = "********"


def _provider(key: str) -> Provider:
    try:
        return providers.get(key)
    except UnknownProvider as exc:
        raise InvalidInput(details={"provider": [str(exc)]}) from None


def split_credentials(provider: Provider, credentials: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split credentials into (non-secret, secret) by the provider's fields."""
    public = {k: v for k, v in credentials.items() if k not in provider.secret_fields}
    secret = {k: v for k, v in credentials.items() if k in provider.secret_fields}
    return public, secret


def _save(integration: Integration) -> Integration:
    try:
        with transaction.atomic():
            integration.save()
    except IntegrityError:
        raise InvalidInput(details={"name": ["You already have an integration with this name."]}) from None
    return integration


def integration_create(
    *, user: User, name: str, provider: str, credentials: dict[str, Any], end_user=None,
) -> Integration:
    """Create an integration; raise InvalidInput naming each bad credential field.

    With `end_user` it is that end user's own account (`user` must be their app's owner):
    tasks of their sessions that name no integration use it (docs/end-users.md).
    """
    if end_user is not None and end_user.app.owner_id != user.pk:
        raise ValueError("an end user's integration belongs to their app's owner")
    spec = _provider(provider)
    problems = spec.check_credentials(credentials)
    if problems:
        raise InvalidInput(details=problems)
    public, secret = split_credentials(spec, credentials)
    return _save(
        Integration(user=user, end_user=end_user, name=name, provider=provider, config=public,
                    secrets_encrypted=encrypt_json(secret))
    )


def integration_update(
    *, integration: Integration, name: str | None = None, credentials: dict[str, Any] | None = None
) -> Integration:
    """Rename and/or merge new credential values over the stored ones (the provider is fixed).

    An integration connected through a provider app takes only its account's fields: the app's
    (consumer key and secret) are changed on the app, for every account connected through it.
    """
    if name is not None:
        integration.name = name
    if credentials is not None:
        spec = _provider(integration.provider)
        fields = spec.account_fields if integration.provider_app_id else spec.fields
        problems = spec.check_credentials(credentials, partial=True, fields=fields)
        if integration.provider_app_id:
            for app_field in spec.app_fields:
                if app_field.name in credentials:
                    problems[f"credentials.{app_field.name}"] = [
                        "Comes from the provider app this account is connected through: change it there."]
        if problems:
            raise InvalidInput(details=problems)
        public, secret = split_credentials(spec, credentials)
        moved = _moved(fields, integration.config, public)
        _require_secrets(moved, stored=integration.secrets_encrypted, secret_fields=spec.secret_fields,
                         sent=secret, whose="integration")
        integration.config = {**integration.config, **public}
        if secret:
            integration.secrets_encrypted = _merged_secrets(integration.secrets_encrypted, secret,
                                                            {f.name for f in fields if f.secret})
    return _save(integration)


def _merged_secrets(stored_token: str, secret: dict[str, Any], secret_fields: set[str]) -> str:
    """Encrypt `secret` merged over the stored secrets.

    Raises Conflict (409) `secrets_unreadable` when the stored ones cannot be decrypted and not
    every secret field is being replaced.
    """
    try:
        stored = decrypt_json(stored_token)
    except DecryptionError:
        if set(secret) != secret_fields:
            raise Conflict(
                "The stored secrets cannot be decrypted with the server's keys: "
                "send every secret field again.",
                code="secrets_unreadable",
                details={f"credentials.{name}": ["Required to replace unreadable secrets."]
                         for name in sorted(secret_fields - set(secret))},
            ) from None
        stored = {}
    return encrypt_json({**stored, **secret})


def _moved(fields: tuple[FieldSpec, ...], config: dict[str, Any], public: dict[str, Any]) -> list[str]:
    """The destination fields (`FieldSpec.destination`) that `public` changes."""
    return sorted(
        f.name for f in fields
        if f.destination and f.name in public and public[f.name] != config.get(f.name, f.default)
    )


def _require_secrets(moved: list[str], *, stored: str, secret_fields: frozenset[str], sent: dict[str, Any],
                     whose: str) -> None:
    """Refuse to move stored secrets to a new destination unless they are sent again.

    Changing a field that decides where the secrets go (`FieldSpec.destination`: an SMTP
    host, port or TLS; a provider app's callback URL) with the old secrets kept would let
    whoever can edit the object (a stolen session, a shared account) send them, or the accounts
    connecting, to a server of their choosing. So the secrets that are stored must come with the
    change; their new values may be the old ones. Raises InvalidInput (400) `secrets_required` naming
    each missing field.
    """
    if not moved:
        return
    try:
        kept = {name for name, value in decrypt_json(stored).items() if value}
    except DecryptionError:
        kept = set(secret_fields)  # unreadable: every one of them must be sent anyway
    missing = sorted((kept & secret_fields) - set(sent))
    if missing:
        raise InvalidInput(
            f"Changing {', '.join(moved)} changes where this {whose}'s secrets are sent: "
            f"send {', '.join(missing)} again with the change.",
            code="secrets_required",
            details={f"credentials.{name}": [f"Required when {', '.join(moved)} change(s)."] for name in missing},
        )


def integration_delete(*, integration: Integration) -> None:
    integration.delete()


def integration_credentials(*, integration: Integration) -> dict[str, Any]:
    """Return every credential in clear, defaults filled in: only for building a client.

    A connected integration's app fields come from its provider app. Raises DecryptionError.
    """
    spec = providers.get(integration.provider)
    values = {f.name: f.default for f in spec.fields if f.default is not None}
    if integration.provider_app is not None:
        values.update(provider_app_credentials(provider_app=integration.provider_app))
    return {**values, **integration.config, **decrypt_json(integration.secrets_encrypted)}


def masked_credentials(integration: Integration) -> dict[str, Any]:
    """Return the credentials as the API shows them: secrets replaced by a fixed mask.

    A connected integration shows its account's fields only (the app's are the app's).
    """
    spec = providers.get(integration.provider)
    fields = spec.account_fields if integration.provider_app_id else spec.fields
    return _masked(integration.config, fields)


def _masked(config: dict[str, Any], fields: tuple[FieldSpec, ...]) -> dict[str, Any]:
    shown = dict(config)
    for name in sorted(f.name for f in fields if f.secret):
        shown[name] = SECRET_MASK
    return shown


# --- provider apps ----------------------------------------------------------------------------

def _oauth_provider(key: str) -> Provider:
    spec = _provider(key)
    if spec.connect == CREDENTIALS:
        raise InvalidInput(details={"provider": [
            f"Provider {key!r} connects with credentials typed in: create an integration instead."]})
    return spec


def _check_callback_url(callback_url: str) -> None:
    if callback_url and urlsplit(callback_url).scheme not in {"http", "https"}:
        raise InvalidInput(details={"callback_url": ["Must be an http or https URL."]})


def _save_app(provider_app: ProviderApp) -> ProviderApp:
    try:
        with transaction.atomic():
            provider_app.save()
    except IntegrityError:
        raise InvalidInput(details={"name": ["You already have a provider app with this name."]}) from None
    return provider_app


def provider_app_create(
    *, user: User, name: str, provider: str, credentials: dict[str, Any], callback_url: str = ""
) -> ProviderApp:
    """Register the builder's app with an OAuth provider; raise InvalidInput naming each
    bad field (a provider that connects with typed-in credentials has no apps)."""
    spec = _oauth_provider(provider)
    problems = spec.check_credentials(credentials, fields=spec.app_fields)
    if problems:
        raise InvalidInput(details=problems)
    _check_callback_url(callback_url)
    public, secret = split_credentials(spec, credentials)
    return _save_app(ProviderApp(user=user, name=name, provider=provider, config=public,
                                 secrets_encrypted=encrypt_json(secret), callback_url=callback_url))


def provider_app_update(
    *, provider_app: ProviderApp, name: str | None = None, credentials: dict[str, Any] | None = None,
    callback_url: str | None = None,
) -> ProviderApp:
    """Rename, change the callback URL and/or merge new app credentials over the stored ones.

    The callback URL, like a destination field, decides where connecting accounts go: changing
    it requires sending the app's secrets again (400 `secrets_required`).
    """
    spec = _provider(provider_app.provider)
    credentials = credentials or {}
    problems = spec.check_credentials(credentials, partial=True, fields=spec.app_fields)
    if problems:
        raise InvalidInput(details=problems)
    public, secret = split_credentials(spec, credentials)
    moved = _moved(spec.app_fields, provider_app.config, public)
    if callback_url is not None:
        _check_callback_url(callback_url)
        if callback_url != provider_app.callback_url:
            moved = sorted([*moved, "callback_url"])
        provider_app.callback_url = callback_url
    _require_secrets(moved, stored=provider_app.secrets_encrypted, secret_fields=spec.secret_fields, sent=secret,
                     whose="provider app")
    if name is not None:
        provider_app.name = name
    provider_app.config = {**provider_app.config, **public}
    if secret:
        provider_app.secrets_encrypted = _merged_secrets(provider_app.secrets_encrypted, secret,
                                                         {f.name for f in spec.app_fields if f.secret})
    return _save_app(provider_app)


def provider_app_delete(*, provider_app: ProviderApp) -> None:
    """Delete the app, and with it every account connected through it (their tokens are the app's)."""
    provider_app.delete()


def provider_app_credentials(*, provider_app: ProviderApp) -> dict[str, Any]:
    """Return the app's credentials in clear: only for the OAuth dance and building clients.

    Raises DecryptionError."""
    return {**provider_app.config, **decrypt_json(provider_app.secrets_encrypted)}


def provider_app_masked_credentials(provider_app: ProviderApp) -> dict[str, Any]:
    return _masked(provider_app.config, providers.get(provider_app.provider).app_fields)


@dataclass(frozen=True)
class Rotated:
    integrations: int
    provider_apps: int
    oauth_states: int


@transaction.atomic
def secrets_rotate_keys() -> Rotated:
    """Re-encrypt every stored secret with the first configured key; return the counts.

    Integrations, provider apps and the request token secrets of OAuth dances in progress.
    Locks the rows so that a concurrent update cannot be overwritten with stale secrets. Raises
    DecryptionError (and changes nothing) if a row cannot be decrypted with any configured key.
    """
    return Rotated(
        integrations=_rotate_rows(Integration.objects.exclude(secrets_encrypted=""), "secrets_encrypted",
                                  "integration"),
        provider_apps=_rotate_rows(ProviderApp.objects.exclude(secrets_encrypted=""), "secrets_encrypted",
                                   "provider app"),
        oauth_states=_rotate_rows(OAuthState.objects.all(), "request_token_secret_encrypted", "OAuth state"),
    )


def _rotate_rows(rows, column: str, kind: str) -> int:
    count = 0
    for row in rows.select_for_update().iterator():
        try:
            setattr(row, column, rotate(getattr(row, column)))
        except InvalidToken:
            raise DecryptionError(f"the secrets of {kind} {row.pk} cannot be decrypted") from None
        row.save(update_fields=[column, "updated_at"])
        count += 1
    return count
