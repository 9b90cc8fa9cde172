from drf_spectacular.utils import extend_schema
from rest_framework import status, viewsets
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.ownership import OwnedQuerysetMixin
from config.openapi import errors
from integrations import selectors, services
from integrations.providers import providers
from integrations.serializers import (
    IntegrationInputSerializer,
    IntegrationOutputSerializer,
    IntegrationUpdateSerializer,
    ProviderSerializer,
)


class ProviderListView(APIView):
    @extend_schema(responses=ProviderSerializer(many=True),
                   description="The integration providers and their credential fields (`secret` ones are never shown back).")
    def get(self, request):
        return Response([provider.describe() for provider in providers])


class IntegrationViewSet(OwnedQuerysetMixin, viewsets.ModelViewSet):
    serializer_class = IntegrationOutputSerializer
    filterset_fields = ["provider", "name"]
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
