from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.enduser_auth import EndUserJWTAuthentication, IsEndUserOfApp
from accounts.ownership import OwnedQuerysetMixin
from integrations import selectors, services
from integrations.providers import providers
from integrations.serializers import (
    IntegrationInputSerializer,
    IntegrationOutputSerializer,
    IntegrationUpdateSerializer,
    ProviderSerializer,
)


class ProviderListView(APIView):
    @extend_schema(responses=ProviderSerializer(many=True))
    def get(self, request):
        return Response([provider.describe() for provider in providers])


class IntegrationViewSet(OwnedQuerysetMixin, viewsets.ModelViewSet):
    serializer_class = IntegrationOutputSerializer
    filterset_fields = ["provider", "name"]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def owned_queryset(self, user):
        return selectors.integration_list(user=user)

    @extend_schema(request=IntegrationInputSerializer, responses={201: IntegrationOutputSerializer})
    def create(self, request):
        data = IntegrationInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        integration = services.integration_create(user=request.user, **data.validated_data)
        return Response(IntegrationOutputSerializer(integration).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        request=IntegrationUpdateSerializer, responses=IntegrationOutputSerializer,
        description="Rename, or merge new credential values over the stored ones. Changing a field "
        "that decides where the secrets are sent (a provider field with `destination`: SMTP host, "
        "port, use_tls) requires sending the stored secrets again: otherwise 400 `secrets_required` "
        "naming each (`credentials.password`).",
    )
    def partial_update(self, request, pk=None):
        integration = self.get_object()
        data = IntegrationUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        integration = services.integration_update(integration=integration, **data.validated_data)
        return Response(IntegrationOutputSerializer(integration).data)

    def perform_destroy(self, instance):
        services.integration_delete(integration=instance)


class EndUserIntegrationViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin,
                                viewsets.GenericViewSet):
    """An end user's own connected accounts (`/api/apps/{slug}/integrations/`): list, disconnect.

    Another end user's or the builder's integration is 404.
    """

    serializer_class = IntegrationOutputSerializer
    filterset_fields = ["provider"]
    authentication_classes = [EndUserJWTAuthentication]
    permission_classes = [IsEndUserOfApp]

    def get_queryset(self):
        return selectors.end_user_integration_list(end_user=self.request.user)

    @extend_schema(description="Disconnect: delete the integration (its secrets with it).")
    def destroy(self, request, slug=None, pk=None):
        services.integration_delete(integration=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)
