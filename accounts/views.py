from django.conf import settings
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins, permissions, status, viewsets
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt.views import TokenObtainPairView, TokenRefreshView

from accounts import rate_limits, selectors, services
from accounts.ownership import OwnedQuerysetMixin
from accounts.serializers import (
    ApiKeyCreatedSerializer,
    ApiKeyInputSerializer,
    ApiKeyOutputSerializer,
    LogoutSerializer,
    PasswordChangeSerializer,
    RegisterInputSerializer,
    TokenPairSerializer,
    UserOutputSerializer,
)
from config.errors import Forbidden
from config.openapi import errors

THROTTLED = OpenApiResponse(description="`throttled`, with `Retry-After`.")


class RegisterView(APIView):
    authentication_classes: list = []
    permission_classes = [permissions.AllowAny]

    @extend_schema(
        request=RegisterInputSerializer,
        responses={201: UserOutputSerializer, 429: THROTTLED,
                   **errors((403, "`registration_closed`: registration is turned off on this server."))},
        description="Create an account. Registrations are throttled per client address (JUNCTION_THROTTLE_REGISTER).",
    )
    def post(self, request):
        if not settings.JUNCTION_ALLOW_REGISTRATION:
            raise Forbidden("Registration is turned off on this server.", code="registration_closed")
        rate_limits.registration_check(request)
        data = RegisterInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user = services.user_register(**data.validated_data)
        return Response(UserOutputSerializer(user).data, status=status.HTTP_201_CREATED)


class LoginView(TokenObtainPairView):
    """Log in: a token pair. Failed logins are throttled per username and per client address."""

    @extend_schema(
        responses={200: TokenPairSerializer, 429: THROTTLED,
                   **errors((401, "`no_active_account`: wrong username or password, or a disabled account."))},
        description="Log in: an access and a refresh token (JWT). Failed logins are limited per username and per client address "
        "(JUNCTION_THROTTLE_LOGIN); past the limit every login for that username or from that "
        "address is 429 until the window ends, even with the right password.",
    )
    def post(self, request, *args, **kwargs):
        username = request.data.get("username") if isinstance(request.data, dict) else None
        if not isinstance(username, str):
            return super().post(request, *args, **kwargs)  # a 400 naming the field
        rate_limits.login_check(request, username)
        try:
            return super().post(request, *args, **kwargs)
        except AuthenticationFailed:
            rate_limits.login_failed(request, username)
            raise


class RefreshView(TokenRefreshView):
    @extend_schema(
        responses={200: TokenPairSerializer,
                   **errors((401, "`token_not_valid`, `token_revoked` or `no_active_account`: the refresh token "
                                  "is invalid, expired, blacklisted or revoked, or its user is gone."))},
        description="Exchange a refresh token for a new access token and a new refresh token: the one "
        "sent is blacklisted (rotation) and refused from then on.",
    )
    def post(self, request, *args, **kwargs):
        return super().post(request, *args, **kwargs)


class LogoutView(APIView):
    """Blacklist a refresh token; access tokens it issued expire on their own (docs/security.md)."""

    authentication_classes: list = []
    permission_classes = [permissions.AllowAny]

    @extend_schema(request=LogoutSerializer, responses={204: None},
                   description="Log out: blacklist the refresh token (with `everywhere`, revoke every token of "
                   "its user). Access tokens it issued expire on their own.")
    def post(self, request):
        data = LogoutSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.token_logout(**data.validated_data)
        return Response(status=status.HTTP_204_NO_CONTENT)


class PasswordView(APIView):
    @extend_schema(
        request=PasswordChangeSerializer, responses={200: TokenPairSerializer},
        description="Change the password. Every access and refresh token issued before is revoked; "
        "the answer is a new pair for the caller. API keys are not revoked.",
    )
    def post(self, request):
        data = PasswordChangeSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        return Response(services.password_change(user=request.user, **data.validated_data))


class MeView(APIView):
    @extend_schema(responses=UserOutputSerializer, description="The current user.")
    def get(self, request):
        return Response(UserOutputSerializer(request.user).data)


class ApiKeyViewSet(
    OwnedQuerysetMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    serializer_class = ApiKeyOutputSerializer
    ordering_fields = ["name", "created_at", "expires_at", "last_used_at"]
    ordering = ["-created_at"]
    search_fields = ["name", "prefix"]

    def owned_queryset(self, user):
        return selectors.api_key_list(user=user)

    @extend_schema(request=ApiKeyInputSerializer, responses={201: ApiKeyCreatedSerializer},
                   description="Create an API key. The key itself is in this answer only: it is stored hashed.")
    def create(self, request):
        data = ApiKeyInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        created = services.api_key_create(user=request.user, **data.validated_data)
        return Response(ApiKeyCreatedSerializer(created).data, status=status.HTTP_201_CREATED)

    @extend_schema(description="Your API keys (never the keys themselves).")
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    @extend_schema(description="Revoke the key: it stops authenticating at once.")
    def destroy(self, request, *args, **kwargs):
        return super().destroy(request, *args, **kwargs)

    def perform_destroy(self, instance):
        services.api_key_revoke(api_key=instance)
