"""Authentication and permission for end users' routes (docs/end-users.md).

Use on any view an end user calls under `/api/apps/{slug}/…`:

    authentication_classes = [EndUserJWTAuthentication]
    permission_classes = [IsEndUserOfApp]

`request.user` is then the `EndUser` (its `group` and `app`, with the app's owner, loaded in
the same query), `request.auth` the validated access token. The URL's `slug` must be the
app of the token: another app's token is 401, as is a builder's token or API key.

The run route takes builders and end users alike: it puts `EndUserJWTAuthentication` before
the builder's classes; it only looks at tokens of the end-user type and leaves every other
credential to the builder's authentication, so a builder's call costs no extra query.
"""
from __future__ import annotations

from rest_framework import authentication, exceptions
from rest_framework.permissions import BasePermission
from rest_framework_simplejwt.exceptions import TokenError

from accounts.enduser_tokens import (
    ACCESS_TYPE,
    APP_CLAIM,
    END_USER_CLAIM,
    TOKEN_VERSION_CLAIM,
    EndUserAccessToken,
    unverified_type,
)
from accounts.models import EndUser

BEARER = "Bearer"


def _bearer(request) -> str | None:
    header = authentication.get_authorization_header(request).split()
    if not header or header[0].decode(errors="replace").lower() != BEARER.lower():
        return None
    if len(header) != 2:
        raise exceptions.AuthenticationFailed("Malformed Authorization header: expected 'Bearer <token>'.")
    return header[1].decode(errors="replace")


def end_user_from_token(raw: str) -> tuple[EndUser, EndUserAccessToken]:
    """Verify an end user's access token and load its end user (one query).

    Raises AuthenticationFailed (401) for a bad, expired or revoked token, or a disabled or
    deleted end user.
    """
    try:
        token = EndUserAccessToken(raw)  # type: ignore[arg-type]  # simplejwt takes the encoded token too
    except TokenError:
        raise exceptions.AuthenticationFailed("The token is invalid or expired.", code="token_not_valid") from None
    end_user = (
        EndUser.objects.select_related("group", "app__owner")
        .filter(pk=token.get(END_USER_CLAIM), app_id=token.get(APP_CLAIM)).first()
    )
    if end_user is None or not end_user.is_active or not end_user.app.owner.is_active:
        raise exceptions.AuthenticationFailed("This account is disabled or no longer exists.", code="account_disabled")
    if token.get(TOKEN_VERSION_CLAIM, 0) != end_user.token_version:
        raise exceptions.AuthenticationFailed("The token has been revoked.", code="token_revoked")
    return end_user, token


class EndUserJWTAuthentication(authentication.BaseAuthentication):
    """`Authorization: Bearer <end user's access token>`; other credentials are not its business.

    Only the token's unverified type is read to decide (no signature check, no query): a
    token of the end-user type is then fully verified; anything else is left to the next
    authentication class (on the run route, the builder's) or, where there is none, refused
    by `IsEndUserOfApp` (401).
    """

    def authenticate(self, request):
        raw = _bearer(request)
        if raw is None or unverified_type(raw) != ACCESS_TYPE:
            return None
        return end_user_from_token(raw)

    def authenticate_header(self, request) -> str:
        return f'{BEARER} realm="api"'


def is_end_user(request) -> bool:
    return isinstance(getattr(request, "user", None), EndUser)


class IsEndUserOfApp(BasePermission):
    """The caller is an end user of the app named by the URL's `slug` (401 otherwise)."""

    def has_permission(self, request, view) -> bool:
        if not is_end_user(request):
            raise exceptions.NotAuthenticated("Log in as an end user of this app: POST /api/apps/{slug}/auth/login/.")
        if request.user.app.slug != view.kwargs.get("slug"):
            raise exceptions.AuthenticationFailed("This token belongs to another app.", code="wrong_app")
        return True
