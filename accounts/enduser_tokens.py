"""End users' JWTs: simplejwt tokens of their own types, signed with their own key.

An end user's token can never pass for a builder's, nor the reverse: the token types differ
(`enduser_access` / `enduser_refresh` against simplejwt's `access` / `refresh`) *and* the
signing key differs (derived from SECRET_KEY for this purpose only), so a builder route's
simplejwt authentication rejects an end user's token as invalid, and the end-user
authentication rejects a builder's.

Claims: `app` (the app's id), `end_user` (the end user's id), `group` (their group when the
token was issued; the group that counts is read from the end user's row at every request, so
a regrouping applies at once) and `tv` (the end user's `token_version`, as for builders).
Refresh tokens rotate and are blacklisted with simplejwt's blacklist app, as builders' are.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

from django.conf import settings
from django.utils.functional import cached_property
from rest_framework_simplejwt.backends import TokenBackend
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.token_blacklist.models import OutstandingToken
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken
from rest_framework_simplejwt.utils import datetime_from_epoch

from accounts.models import EndUser

ACCESS_TYPE = "enduser_access"
REFRESH_TYPE = "enduser_refresh"
APP_CLAIM, END_USER_CLAIM, GROUP_CLAIM, TOKEN_VERSION_CLAIM = "app", "end_user", "group", "tv"


class _Backend:
    """The TokenBackend of end-user tokens, built on first use (settings are read then)."""

    @cached_property
    def backend(self) -> TokenBackend:
        key = hmac.new(settings.SECRET_KEY.encode(), b"junction.end-user-jwt", hashlib.sha256).hexdigest()
        # HS256 whatever SIMPLE_JWT says: the key is a shared secret by construction.
        return TokenBackend("HS256", signing_key=key, leeway=api_settings.LEEWAY)


_backend = _Backend()


class EndUserAccessToken(AccessToken):
    token_type = ACCESS_TYPE

    @property
    def token_backend(self) -> TokenBackend:
        return _backend.backend


class EndUserRefreshToken(RefreshToken):
    token_type = REFRESH_TYPE
    access_token_class = EndUserAccessToken

    @property
    def token_backend(self) -> TokenBackend:
        return _backend.backend


def token_pair(*, end_user: EndUser) -> dict[str, str]:
    """Issue a refresh and an access token for `end_user` (its app and group loaded).

    The refresh token is recorded as outstanding (without a builder user) so that it can be
    blacklisted on rotation and logout.
    """
    refresh = EndUserRefreshToken()
    refresh[APP_CLAIM] = str(end_user.app_id)
    refresh[END_USER_CLAIM] = str(end_user.id)
    refresh[GROUP_CLAIM] = end_user.group.name
    refresh[TOKEN_VERSION_CLAIM] = end_user.token_version
    OutstandingToken.objects.create(
        user=None, jti=refresh[api_settings.JTI_CLAIM], token=str(refresh), created_at=refresh.current_time,
        expires_at=datetime_from_epoch(refresh["exp"]),
    )
    return {"refresh": str(refresh), "access": str(refresh.access_token)}


def unverified_type(raw: str) -> str | None:
    """The `token_type` claim of a JWT, read without checking it (to route it to its checker).

    Never trusted for anything else: the token is then verified by the class of that type.
    """
    try:
        payload = raw.split(".")[1]
        decoded: Any = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError, UnicodeDecodeError):
        return None
    value = decoded.get(api_settings.TOKEN_TYPE_CLAIM) if isinstance(decoded, dict) else None
    return value if isinstance(value, str) else None
