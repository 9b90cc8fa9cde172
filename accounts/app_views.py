"""Apps (the builder's routes) and the end users' own authentication routes (docs/end-users.md)."""
import django_filters
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins, permissions, status, viewsets
from rest_framework.exceptions import NotFound
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import app_selectors, app_services, rate_limits
from accounts.app_serializers import (
    AppInputSerializer,
    AppOutputSerializer,
    EndUserLoginSerializer,
    EndUserMeSerializer,
    EndUserOutputSerializer,
    EndUserRegisterSerializer,
    EndUserUpdateSerializer,
    InvitationCreatedSerializer,
    InvitationInputSerializer,
    InvitationOutputSerializer,
    RefreshSerializer,
)
from accounts.enduser_auth import EndUserJWTAuthentication, IsEndUserOfApp
from config import listing
from config.errors import Unauthenticated
from config.openapi import errors
from accounts.models import EndUser, Invitation
from accounts.ownership import OwnedQuerysetMixin
from accounts.serializers import PasswordChangeSerializer, TokenPairSerializer

THROTTLED = OpenApiResponse(description="Throttled: the error shape, code `throttled`, with `Retry-After`.")
END_USER_ONLY = ("End-user route: `Authorization: Bearer <access>` from POST /api/apps/{slug}/auth/login/. "
                 "A builder's token or API key, or another app's end user's token, is 401.")


# --- builder routes -------------------------------------------------------------------------

class AppViewSet(OwnedQuerysetMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """The builder's apps. Routes take the app's id; end users use its slug."""

    serializer_class = AppOutputSerializer
    filterset_fields = ["slug", "signup"]
    ordering_fields = ["name", "slug", "created_at", "updated_at"]
    ordering = ["name"]
    search_fields = ["name", "slug"]
    lookup_value_regex = "[0-9a-fA-F-]{36}"

    def owned_queryset(self, user):
        return app_selectors.app_list(owner=user)

    def _render(self, app, code=status.HTTP_200_OK):
        return Response(self.get_serializer(self.get_queryset().get(pk=app.pk)).data, status=code)

    @extend_schema(request=AppInputSerializer, responses={201: AppOutputSerializer})
    def create(self, request):
        data = AppInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        return self._render(app_services.app_create(owner=request.user, **data.validated_data), status.HTTP_201_CREATED)

    @extend_schema(request=AppInputSerializer, responses={200: AppOutputSerializer, **errors(
        (409, "`group_in_use`: a group left out of `groups` still has end users or is admitted by an interaction."))})
    def partial_update(self, request, pk=None):
        app = self.get_object()
        data = AppInputSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        return self._render(app_services.app_update(app=app, **data.validated_data))

    @extend_schema(description="Delete the app, its groups, end users (and their integrations) and invitations. "
                   "Its interactions stay, back to `access: owner`.")
    def destroy(self, request, pk=None):
        app_services.app_delete(app=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)


class _OwnedAppMixin:
    """Routes under /api/apps/{app_pk}/: the app must be the caller's (404 otherwise)."""

    def owned_app(self):
        if not hasattr(self, "_app"):
            self._app = app_selectors.app_list(owner=self.request.user).filter(pk=self.kwargs["app_pk"]).first()
            if self._app is None:
                raise NotFound("No such app.")
        return self._app


class EndUserFilter(listing.FilterSet):
    group = django_filters.CharFilter(field_name="group__name")

    class Meta:
        model = EndUser
        fields = ["group", "is_active"]


class AppEndUserViewSet(_OwnedAppMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin,
                        mixins.DestroyModelMixin, viewsets.GenericViewSet):
    """The end users of one of the builder's apps: list, regroup, disable, delete."""

    serializer_class = EndUserOutputSerializer
    filterset_class = EndUserFilter
    ordering_fields = ["email", "created_at"]
    ordering = ["-created_at"]
    search_fields = ["email"]
    queryset = EndUser.objects.none()  # for the OpenAPI generator; get_queryset() scopes it

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return self.queryset
        return app_selectors.end_user_list(app=self.owned_app())

    @extend_schema(request=EndUserUpdateSerializer, responses=EndUserOutputSerializer,
                   description="Regroup (`group`: a group name of the app) and/or disable (`is_active: false`: "
                   "every token of the end user stops working) an end user.")
    def partial_update(self, request, app_pk=None, pk=None):
        end_user = self.get_object()
        data = EndUserUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        return Response(EndUserOutputSerializer(app_services.end_user_update(end_user=end_user, **data.validated_data)).data)

    def perform_destroy(self, instance):
        app_services.end_user_delete(end_user=instance)


class AppInvitationViewSet(_OwnedAppMixin, mixins.ListModelMixin, mixins.DestroyModelMixin, viewsets.GenericViewSet):
    serializer_class = InvitationOutputSerializer
    ordering_fields = ["email", "created_at", "expires_at"]
    ordering = ["-created_at"]
    search_fields = ["email"]
    queryset = Invitation.objects.none()  # for the OpenAPI generator; get_queryset() scopes it

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return self.queryset
        return app_selectors.invitation_list(app=self.owned_app())

    @extend_schema(request=InvitationInputSerializer, responses={201: InvitationCreatedSerializer},
                   description="Invite an e-mail address: the token (single use, shown once) lets it register "
                   "in an invite-only app (JUNCTION_INVITATION_DAYS).")
    def create(self, request, app_pk=None):
        data = InvitationInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        created = app_services.invitation_create(app=self.owned_app(), **data.validated_data)
        return Response(InvitationCreatedSerializer(created).data, status=status.HTTP_201_CREATED)

    def perform_destroy(self, instance):
        app_services.invitation_delete(invitation=instance)


# --- end users' routes ----------------------------------------------------------------------

class _Anonymous(APIView):
    authentication_classes: list = []
    permission_classes = [permissions.AllowAny]

    def get_authenticate_header(self, request) -> str:
        return 'Bearer realm="api"'  # as simplejwt's views: bad credentials are 401, not 403


class EndUserRegisterView(_Anonymous):
    @extend_schema(
        request=EndUserRegisterSerializer, responses={201: EndUserMeSerializer, 403: OpenApiResponse(
            description="`signup_closed`, `invitation_required` or `invitation_invalid`."), 429: THROTTLED},
        description="Register in the app (its sign-up policy decides). Throttled per client address and app "
        "(JUNCTION_THROTTLE_REGISTER).",
    )
    def post(self, request, slug):
        app = app_selectors.app_by_slug(slug=slug)
        rate_limits.registration_check(request, realm=f"app:{app.id}:")
        data = EndUserRegisterSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        end_user = app_services.end_user_register(app=app, **data.validated_data)
        return Response(EndUserMeSerializer(end_user).data, status=status.HTTP_201_CREATED)


class EndUserLoginView(_Anonymous):
    @extend_schema(
        request=EndUserLoginSerializer, responses={
            200: TokenPairSerializer, 429: THROTTLED,
            **errors((401, "`no_active_account`: wrong e-mail or password, or a disabled end user."))},
        description="Log in: a token pair whose claims are the app, the end user and their group. Failed "
        "logins are limited per e-mail and per client address (JUNCTION_THROTTLE_LOGIN), in windows of the app.",
    )
    def post(self, request, slug):
        app = app_selectors.app_by_slug(slug=slug)
        data = EndUserLoginSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        email, realm = data.validated_data["email"], f"app:{app.id}:"
        rate_limits.login_check(request, email, realm=realm)
        try:
            pair = app_services.end_user_login(app=app, **data.validated_data)
        except Unauthenticated:
            rate_limits.login_failed(request, email, realm=realm)
            raise
        return Response(pair)


class EndUserRefreshView(_Anonymous):
    @extend_schema(request=RefreshSerializer, responses={
        200: TokenPairSerializer,
        **errors((401, "`token_not_valid`, `wrong_app`, `account_disabled` or `token_revoked`: the refresh token "
                       "cannot be used."))},
                   description="Rotate: a new pair; the refresh token sent is blacklisted.")
    def post(self, request, slug):
        app = app_selectors.app_by_slug(slug=slug)
        data = RefreshSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        return Response(app_services.end_user_refresh(app=app, **data.validated_data))


class EndUserLogoutView(_Anonymous):
    @extend_schema(request=RefreshSerializer, responses={204: None, **errors(
        (401, "`token_not_valid` or `wrong_app`: not a refresh token of this app, expired or already used."))},
                   description="Log out: blacklist the refresh token. Access tokens it issued expire on their own.")
    def post(self, request, slug):
        app = app_selectors.app_by_slug(slug=slug)
        data = RefreshSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        app_services.end_user_logout(app=app, **data.validated_data)
        return Response(status=status.HTTP_204_NO_CONTENT)


class EndUserView(APIView):
    authentication_classes = [EndUserJWTAuthentication]
    permission_classes = [IsEndUserOfApp]


class EndUserMeView(EndUserView):
    @extend_schema(responses=EndUserMeSerializer, description=END_USER_ONLY)
    def get(self, request, slug):
        return Response(EndUserMeSerializer(request.user).data)


class EndUserPasswordView(EndUserView):
    @extend_schema(request=PasswordChangeSerializer, responses=TokenPairSerializer,
                   description="Change the password: every token issued before is revoked; the answer is a new "
                   "pair. " + END_USER_ONLY)
    def post(self, request, slug):
        data = PasswordChangeSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        return Response(app_services.end_user_password_change(end_user=request.user, **data.validated_data))
