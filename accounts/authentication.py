"""Authentication for DRF: JWTs that can be revoked, and `Authorization: Api-Key <key>`."""
from __future__ import annotations

from django.utils import timezone
from rest_framework import authentication, exceptions
from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.settings import api_settings

from accounts.models import ApiKey
from accounts.selectors import api_key_authenticate
from accounts.services import TOKEN_VERSION_CLAIM, api_key_touch, hash_api_key
from accounts.signals import API_KEYS, USERS
from config.hotcache import HotCache

# The users and keys run calls authenticate with, per process (config/hotcache.py). Only run
# calls use them, and only to let a caller in: the run checks what it took from them in the
# round trip that writes its session (interactions.runstore.Expected), and anything that
# would keep a caller out is decided from the database.
_users: HotCache = HotCache(USERS)
_api_keys: HotCache = HotCache(API_KEYS)
RUN_ROUTE = "interaction-run"


def _cacheable(request) -> bool:
    """A run call that has not been sent the slow way (reauthenticate)."""
    django_request = getattr(request, "_request", request)
    match = getattr(django_request, "resolver_match", None)
    return match is not None and match.url_name == RUN_ROUTE and not getattr(django_request, "_junction_fresh", False)


def hot_path(request) -> bool:
    """Whether a run call may take its caller and interaction from the caches: not when a run
    key limited to chosen interactions needs the scoped query (accounts.ownership)."""
    key = request.auth
    return _cacheable(request) and not (isinstance(key, ApiKey) and key.limited)


def reauthenticate(request) -> None:
    """Authenticate `request` again from the database (what the caches said did not hold)."""
    request._request._junction_fresh = True
    for authenticator in request.authenticators:
        found = authenticator.authenticate(request)
        if found is not None:
            request.user, request.auth = found
            return
    raise exceptions.NotAuthenticated()

KEYWORD = "Api-Key"


class RevocableJWTAuthentication(JWTAuthentication):
    """simplejwt's authentication, refusing a token issued before its user's tokens were revoked.

    Tokens carry the user's `token_version` from when they were issued; a password change,
    deactivation or "log out everywhere" bumps it (accounts.services). The user row is loaded
    by simplejwt anyway, so the check costs nothing; it is kept in the process's cache, dropped
    whenever the user changes (accounts.signals), so most calls cost no query at all.
    """

    run_call = False

    def authenticate(self, request):
        self.run_call = _cacheable(request)  # DRF makes an authenticator per request
        return super().authenticate(request)

    def get_user(self, validated_token):
        user_id = validated_token.get(api_settings.USER_ID_CLAIM)
        cacheable = user_id is not None and self.run_call
        user = _users.get(str(user_id)) if cacheable else None
        if user is None or not user.is_active or user.token_version != validated_token.get(TOKEN_VERSION_CLAIM, 0):
            ticket = _users.ticket()
            user = super().get_user(validated_token)
            if cacheable:
                _users.put(str(user_id), user, ticket)
        if validated_token.get(TOKEN_VERSION_CLAIM, 0) != user.token_version:
            raise exceptions.AuthenticationFailed("The token has been revoked.", code="token_revoked")
        return user


class ApiKeyAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request):
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].decode(errors="replace").lower() != KEYWORD.lower():
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Malformed Api-Key header: expected 'Api-Key <key>'.")
        hashed = hash_api_key(header[1].decode(errors="replace"))
        cacheable = _cacheable(request)
        api_key = _api_keys.get(hashed) if cacheable else None
        if api_key is None or (api_key.expires_at is not None and api_key.expires_at <= timezone.now()):
            ticket = _api_keys.ticket()
            api_key = api_key_authenticate(hashed_key=hashed)
            if api_key is not None and cacheable:
                _api_keys.put(hashed, api_key, ticket)
        if api_key is None:
            raise exceptions.AuthenticationFailed("Invalid, expired or revoked API key.")
        used = api_key.last_used_at
        api_key_touch(api_key=api_key)
        if api_key.last_used_at != used:
            _api_keys.replace(hashed, api_key)
        return api_key.user, api_key

    def authenticate_header(self, request) -> str:
        return KEYWORD
