"""`Authorization: Api-Key <key>` authentication for DRF."""
from __future__ import annotations

from rest_framework import authentication, exceptions

from accounts.selectors import api_key_authenticate

KEYWORD = "Api-Key"


class ApiKeyAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request):
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].decode(errors="replace").lower() != KEYWORD.lower():
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Malformed Api-Key header: expected 'Api-Key <key>'.")
        api_key = api_key_authenticate(key=header[1].decode(errors="replace"))
        if api_key is None:
            raise exceptions.AuthenticationFailed("Invalid or revoked API key.")
        return api_key.user, api_key

    def authenticate_header(self, request) -> str:
        return KEYWORD
