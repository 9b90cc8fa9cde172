from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from django.http import HttpResponseRedirect
from django.urls import reverse
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins, permissions, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.app_views import END_USER_ONLY
from accounts.enduser_auth import EndUserJWTAuthentication, IsEndUserOfApp
from accounts.ownership import OwnedQuerysetMixin
from config import listing
from config.errors import NotFound
from config.openapi import errors
from integrations import connect, selectors, services
from integrations.models import Integration
from integrations.providers import providers
from integrations.serializers import (
    ConnectStartedSerializer,
    IntegrationInputSerializer,
    IntegrationOutputSerializer,
    IntegrationUpdateSerializer,
    OAuthCallbackSerializer,
    ProviderAppInputSerializer,
    ProviderAppOutputSerializer,
    ProviderAppUpdateSerializer,
    ProviderSerializer,
)


class ProviderListView(APIView):
    @extend_schema(responses=ProviderSerializer(many=True),
                   description="The integration providers and their credential fields (`secret` ones are never shown back).")
    def get(self, request):
        return Response([provider.describe() for provider in providers])


class IntegrationFilter(listing.FilterSet):
    provider_app = listing.UUIDFilter(field_name="provider_app_id")

    class Meta:
        model = Integration
        fields = ["provider", "name", "provider_app"]


class IntegrationViewSet(OwnedQuerysetMixin, viewsets.ModelViewSet):
    serializer_class = IntegrationOutputSerializer
    filterset_class = IntegrationFilter
    ordering_fields = ["name", "provider", "created_at", "updated_at"]
    ordering = ["name"]
    search_fields = ["name"]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def owned_queryset(self, user):
        return selectors.integration_list(user=user)

    @extend_schema(request=IntegrationInputSerializer, responses={201: IntegrationOutputSerializer},
                   description="Connect an account: the credentials are checked against the provider's fields; "
                   "secret ones are encrypted at rest and never shown back.")
    def create(self, request):
        data = IntegrationInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        integration = services.integration_create(user=request.user, **data.validated_data)
        return Response(IntegrationOutputSerializer(integration).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        request=IntegrationUpdateSerializer,
        responses={200: IntegrationOutputSerializer, **errors(
            (409, "`secrets_unreadable`: the stored secrets cannot be decrypted; send every secret again."))},
        description="Rename, or merge new credential values over the stored ones. Changing a field "
        "that decides where the secrets are sent (a provider field with `destination`: SMTP host, "
        "port, use_tls) requires sending the stored secrets again: otherwise 400 `secrets_required` "
        "naming each (`credentials.password`). An integration connected through a provider app takes "
        "only its account's fields (not the provider's `app` fields).",
    )
    def partial_update(self, request, pk=None):
        integration = self.get_object()
        data = IntegrationUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        integration = services.integration_update(integration=integration, **data.validated_data)
        return Response(IntegrationOutputSerializer(integration).data)

    @extend_schema(description="Delete the integration; for one connected by OAuth: disconnect the account.")
    def destroy(self, request, *args, **kwargs):
        return super().destroy(request, *args, **kwargs)

    def perform_destroy(self, instance):
        services.integration_delete(integration=instance)


class EndUserIntegrationViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin,
                                viewsets.GenericViewSet):
    """An end user's own connected accounts (`/api/apps/{slug}/integrations/`): list, disconnect.

    Another end user's or the builder's integration is 404.
    """

    serializer_class = IntegrationOutputSerializer
    filterset_fields = ["provider"]
    ordering_fields = ["name", "provider", "created_at", "updated_at"]
    ordering = ["name"]
    search_fields = ["name"]
    authentication_classes = [EndUserJWTAuthentication]
    permission_classes = [IsEndUserOfApp]

    def get_queryset(self):
        return selectors.end_user_integration_list(end_user=self.request.user)

    @extend_schema(description="Disconnect: delete the integration (its secrets with it).")
    def destroy(self, request, slug=None, pk=None):
        services.integration_delete(integration=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)


class EndUserConnectView(APIView):
    """`POST /api/apps/{slug}/connect/{provider_app_id}/`: an end user connects their own account
    through a provider app of the builder who owns the app (docs/end-users.md)."""

    authentication_classes = [EndUserJWTAuthentication]
    permission_classes = [IsEndUserOfApp]

    @extend_schema(
        request=None,
        responses={
            200: ConnectStartedSerializer,
            400: OpenApiResponse(description="`provider_refused`: the provider refused the app's credentials."),
            401: OpenApiResponse(description="Not an end user of this app: no token, a builder's token or API key, "
                                             "another app's end user's token, a disabled end user."),
            404: OpenApiResponse(description="No provider app with this id among those of the app's builder."),
            503: OpenApiResponse(description="The provider cannot be reached."),
        },
        description="Start connecting your own account (OAuth 1.0a for Twitter) through a provider app of the "
        "app's builder: send the browser to `authorize_url`; the provider sends it back to "
        "`/api/oauth/callback/`, which creates the integration, yours alone (listed at "
        "`/api/apps/{slug}/integrations/`), then redirects to the provider app's `callback_url` with "
        "`?integration=<id>` when it has one. Connecting the same account again refreshes its tokens. "
        + END_USER_ONLY,
    )
    def post(self, request, slug, provider_app_id):
        end_user = request.user
        builder = end_user.app.owner
        provider_app = selectors.provider_app_list(user=builder).filter(pk=provider_app_id).first()
        if provider_app is None:
            raise NotFound("No such provider app in this app.")
        started = connect.start_connect(provider_app=provider_app, builder=builder, end_user=end_user,
                                        callback=request.build_absolute_uri(reverse("oauth-callback")))
        return Response(ConnectStartedSerializer(started).data)


class ProviderAppViewSet(OwnedQuerysetMixin, viewsets.ModelViewSet):
    """The builder's apps registered with OAuth providers (SPEC §2.7, docs/providers.md)."""

    serializer_class = ProviderAppOutputSerializer
    filterset_fields = ["provider", "name"]
    ordering_fields = ["name", "provider", "created_at", "updated_at"]
    ordering = ["name"]
    search_fields = ["name"]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def owned_queryset(self, user):
        return selectors.provider_app_list(user=user)

    @extend_schema(request=ProviderAppInputSerializer, responses={201: ProviderAppOutputSerializer})
    def create(self, request):
        data = ProviderAppInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        provider_app = services.provider_app_create(user=request.user, **data.validated_data)
        return Response(self.get_serializer(provider_app).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        request=ProviderAppUpdateSerializer, responses=ProviderAppOutputSerializer,
        description="Rename, change the callback URL, or merge new app credentials over the stored ones. "
        "Changing `callback_url` (where connecting accounts are sent) requires sending the app's secrets "
        "again: otherwise 400 `secrets_required` naming each (`credentials.consumer_secret`).",
    )
    def partial_update(self, request, pk=None):
        provider_app = self.get_object()
        data = ProviderAppUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        provider_app = services.provider_app_update(provider_app=provider_app, **data.validated_data)
        return Response(self.get_serializer(provider_app).data)

    @extend_schema(description="Delete the app and disconnect every account connected through it.")
    def destroy(self, request, *args, **kwargs):
        return super().destroy(request, *args, **kwargs)

    def perform_destroy(self, instance):
        services.provider_app_delete(provider_app=instance)

    @extend_schema(
        request=None, responses=ConnectStartedSerializer,
        description="Start connecting your own account through this app (OAuth 1.0a for Twitter): send the "
        "browser to `authorize_url`; the provider sends it back to `/api/oauth/callback/`, which creates the "
        "integration. 400 `provider_refused` when the provider refuses the app's credentials, 503 when it "
        "cannot be reached.",
    )
    @action(detail=True, methods=["post"])
    def connect(self, request, pk=None):
        provider_app = self.get_object()
        started = connect.start_connect(provider_app=provider_app, builder=request.user,
                                        callback=request.build_absolute_uri(reverse("oauth-callback")))
        return Response(ConnectStartedSerializer(started).data)


class OAuthCallbackView(APIView):
    """Where the provider sends the account owner back: needs no credentials, the state is the
    capability (docs/providers.md says why that is safe)."""

    authentication_classes: list = []
    permission_classes = [permissions.AllowAny]

    @extend_schema(
        parameters=[OAuthCallbackSerializer],
        responses={200: IntegrationOutputSerializer,
                   302: OpenApiResponse(description="To the provider app's `callback_url` with `?integration=<id>`, "
                                                    "when it has one.")},
        description="Exchange the verifier for the account's access token and create the integration, owned by "
        "whoever started the connection. A state that is unknown, used before or older than 10 minutes, or an "
        "`oauth_token` that is not the state's request token, is 400 in the error shape (`oauth_state_invalid`, "
        "`oauth_state_used`, `oauth_state_expired`, `oauth_token_mismatch`; `oauth_denied` when the owner "
        "declined); the provider's refusal is 400 `provider_refused`, the provider unreachable 503.",
    )
    def get(self, request):
        if "denied" in request.query_params:
            connect.decline_connect(state=request.query_params.get("state", ""))
        query = OAuthCallbackSerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        integration = connect.finish_connect(state=query.validated_data["state"],
                                             token=query.validated_data["oauth_token"],
                                             verifier=query.validated_data["oauth_verifier"])
        if integration.provider_app.callback_url:
            return HttpResponseRedirect(_with_query(integration.provider_app.callback_url, integration=integration.id))
        return Response(IntegrationOutputSerializer(integration).data)


def _with_query(url: str, **params) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in params]
    query += [(k, str(v)) for k, v in params.items()]
    return urlunsplit(parts._replace(query=urlencode(query)))
