"""Authentication for DRF: JWTs that can be revoked, and `Authorization: Api-Key <key>`."""
from __future__ import annotations

from rest_framework import authentication, exceptions
from rest_framework_simplejwt.authentication import JWTAuthentication

from accounts.selectors import api_key_authenticate
from accounts.services import TOKEN_VERSION_CLAIM, api_key_touch

KEYWORD = "Api-Key"


class RevocableJWTAuthentication(JWTAuthentication):
    """simplejwt's authentication, refusing a token issued before its user's tokens were revoked.

    Tokens carry the user's `token_version` from when they were issued; a password change,
    deactivation or "log out everywhere" bumps it (accounts.services). The user row is loaded
    by simplejwt anyway, so the check costs nothing.
    """

    def get_user(self, validated_token):
        user = super().get_user(validated_token)
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
        api_key = api_key_authenticate(key=header[1].decode(errors="replace"))
        if api_key is None:
            raise exceptions.AuthenticationFailed("Invalid, expired or revoked API key.")
        api_key_touch(api_key=api_key)
        return api_key.user, api_key

    def authenticate_header(self, request) -> str:
        return KEYWORD
