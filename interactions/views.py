from drf_spectacular.utils import extend_schema
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from accounts.ownership import OwnedQuerysetMixin
from interactions import selectors, services
from interactions.serializers import (
    EndpointSerializer,
    InteractionInputSerializer,
    InteractionOutputSerializer,
    InteractionVersionSerializer,
)


class InteractionViewSet(OwnedQuerysetMixin, viewsets.ModelViewSet):
    serializer_class = InteractionOutputSerializer
    filterset_fields = ["is_active", "name"]

    def owned_queryset(self, user):
        return selectors.interaction_list(user=user)

    def _render(self, interaction, code=status.HTTP_200_OK):
        return Response(self.get_serializer(interaction).data, status=code)

    @extend_schema(request=InteractionInputSerializer, responses={201: InteractionOutputSerializer})
    def create(self, request):
        data = InteractionInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        interaction = services.interaction_create(user=request.user, **data.validated_data)
        return self._render(interaction, status.HTTP_201_CREATED)

    @extend_schema(request=InteractionInputSerializer, responses=InteractionOutputSerializer)
    def update(self, request, pk=None, partial=False):
        interaction = self.get_object()
        data = InteractionInputSerializer(data=request.data, partial=partial)
        data.is_valid(raise_exception=True)
        interaction = services.interaction_update(interaction=interaction, **data.validated_data)
        return self._render(interaction)

    def perform_destroy(self, instance):
        services.interaction_delete(interaction=instance)

    @extend_schema(request=None, responses=InteractionOutputSerializer)
    @action(detail=True, methods=["post"])
    def activate(self, request, pk=None):
        return self._render(services.interaction_set_active(interaction=self.get_object(), active=True))

    @extend_schema(request=None, responses=InteractionOutputSerializer)
    @action(detail=True, methods=["post"])
    def deactivate(self, request, pk=None):
        return self._render(services.interaction_set_active(interaction=self.get_object(), active=False))

    @extend_schema(responses=InteractionVersionSerializer(many=True))
    @action(detail=True, methods=["get"])
    def versions(self, request, pk=None):
        page = self.paginate_queryset(selectors.version_list(interaction=self.get_object()))
        return self.get_paginated_response(InteractionVersionSerializer(page, many=True).data)

    @extend_schema(responses=EndpointSerializer)
    @action(detail=True, methods=["get"])
    def endpoint(self, request, pk=None):
        interaction = self.get_object()
        run_url = request.build_absolute_uri(f"/api/interactions/{interaction.id}/run/")
        return Response(selectors.interaction_endpoint(interaction=interaction, run_url=run_url))
