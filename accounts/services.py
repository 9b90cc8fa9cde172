"""Writes for accounts: registration, passwords and token revocation, API keys."""
from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken
from rest_framework_simplejwt.tokens import RefreshToken

from accounts.models import ApiKey, User
from accounts.signals import user_changed
from config.errors import InvalidInput

KEY_PREFIX = "jk_"
# The claim that carries `User.token_version` in every JWT (accounts.authentication).
TOKEN_VERSION_CLAIM = "tv"
# `last_used_at` is written at most this often per key: one conditional UPDATE when stale, so
# a key used thousands of times a minute costs one extra write a minute, not one per request.
LAST_USED_RESOLUTION = timedelta(seconds=60)


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class CreatedApiKey:
    api_key: ApiKey
    key: str  # shown once, never stored


def user_register(*, username: str, email: str, password: str) -> User:
    """Create a user; raise InvalidInput naming the field for a taken name or weak password."""
    if User.objects.filter(username__iexact=username).exists():
        raise InvalidInput(details={"username": ["A user with that username already exists."]})
    candidate = User(username=username, email=email)
    try:
        validate_password(password, user=candidate)
    except DjangoValidationError as exc:
        raise InvalidInput(details={"password": list(exc.messages)}) from None
    candidate.set_password(password)
    try:
        with transaction.atomic():
            candidate.save()
    except IntegrityError:
        raise InvalidInput(details={"username": ["A user with that username already exists."]}) from None
    return candidate


def api_key_create(
    *, user: User, name: str, scope: str = ApiKey.Scope.FULL, interactions: list | None = None,
    expires_at: datetime | None = None,
) -> CreatedApiKey:
    """Create an API key for `user` and return it with the clear key, which is not kept.

    `interactions` (ids; only with scope `run`) limits the key to running those interactions;
    None means every interaction of the user. Raises InvalidInput naming the field for an
    expiry in the past, a limit on a full key, or an interaction that is not the user's.
    """
    from interactions.models import Interaction  # accounts is below interactions

    if expires_at is not None and expires_at <= timezone.now():
        raise InvalidInput(details={"expires_at": ["Must be in the future."]})
    chosen: list = []
    if interactions is not None:
        if scope != ApiKey.Scope.RUN:
            raise InvalidInput(details={"interactions": ["Only a key of scope 'run' can be limited to interactions."]})
        wanted = {str(pk) for pk in interactions}
        chosen = list(Interaction.objects.filter(user=user, pk__in=wanted))
        unknown = wanted - {str(found.pk) for found in chosen}
        if unknown:
            raise InvalidInput(details={"interactions": [f"Unknown interaction: {pk}" for pk in sorted(unknown)]})
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    with transaction.atomic():
        api_key = ApiKey.objects.create(
            user=user, name=name, prefix=key[: len(KEY_PREFIX) + 8], hashed_key=hash_api_key(key),
            scope=scope, limited=interactions is not None, expires_at=expires_at,
        )
        api_key.interactions.set(chosen)
    return CreatedApiKey(api_key=api_key, key=key)


def api_key_touch(*, api_key: ApiKey) -> None:
    """Record that the key was used, at most once per LAST_USED_RESOLUTION (no round trip otherwise)."""
    now = timezone.now()
    if api_key.last_used_at is not None and now - api_key.last_used_at < LAST_USED_RESOLUTION:
        return
    stale = Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - LAST_USED_RESOLUTION)
    ApiKey.objects.filter(stale, pk=api_key.pk).update(last_used_at=now)
    api_key.last_used_at = now


# --- tokens ---------------------------------------------------------------------------------

def token_pair(*, user: User) -> dict[str, str]:
    """Issue a refresh and an access token for `user`, stamped with their token version."""
    refresh = RefreshToken.for_user(user)
    refresh[TOKEN_VERSION_CLAIM] = user.token_version
    return {"refresh": str(refresh), "access": str(refresh.access_token)}


def tokens_revoke(*, user: User) -> None:
    """Revoke every access and refresh token of `user` issued so far.

    Bumps `token_version` (access tokens fail at once, accounts.authentication) and blacklists
    every outstanding refresh token (so they fail even where the version is not checked).
    """
    User.objects.filter(pk=user.pk).update(token_version=F("token_version") + 1)
    user_changed(user.pk)  # an update() sends no signal
    user.refresh_from_db(fields=["token_version"])
    live = OutstandingToken.objects.filter(user=user, expires_at__gt=timezone.now(), blacklistedtoken__isnull=True)
    BlacklistedToken.objects.bulk_create([BlacklistedToken(token=token) for token in live], ignore_conflicts=True)


def token_logout(*, refresh: str, everywhere: bool = False) -> None:
    """Blacklist a refresh token (and with `everywhere`, every token of its user).

    Raises InvalidInput naming `refresh` when it is not a valid refresh token.
    """
    try:
        token = RefreshToken(refresh)  # type: ignore[arg-type]  # simplejwt takes the encoded token; its stubs say Token
    except TokenError as exc:
        raise InvalidInput(details={"refresh": [str(exc)]}) from None
    token.blacklist()
    if everywhere:
        user_id = token.payload.get("user_id")
        user = User.objects.filter(pk=user_id).first() if user_id else None
        if user is not None:
            tokens_revoke(user=user)


def password_change(*, user: User, old: str, new: str) -> dict[str, str]:
    """Change the password and revoke every token; return a fresh token pair for the caller.

    Raises InvalidInput naming `old` (wrong) or `new` (too weak). API keys stay valid: they
    are separate credentials, revoked one by one (docs/security.md).
    """
    if not user.check_password(old):
        raise InvalidInput(details={"old": ["The current password is wrong."]})
    try:
        validate_password(new, user=user)
    except DjangoValidationError as exc:
        raise InvalidInput(details={"new": list(exc.messages)}) from None
    with transaction.atomic():
        user.set_password(new)
        user.save(update_fields=["password", "updated_at"])
        tokens_revoke(user=user)
    return token_pair(user=user)


def user_set_active(*, user: User, active: bool) -> User:
    """Activate or deactivate a user; deactivation revokes every token (and a later
    reactivation does not bring them back). API keys stop working while the user is inactive."""
    with transaction.atomic():
        user.is_active = active
        user.save(update_fields=["is_active", "updated_at"])
        if not active:
            tokens_revoke(user=user)
    return user


def api_key_revoke(*, api_key: ApiKey) -> None:
    """Revoke a key: it stops authenticating at once and leaves the listing."""
    api_key.revoked_at = timezone.now()
    api_key.save(update_fields=["revoked_at", "updated_at"])
