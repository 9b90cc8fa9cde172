from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, permissions, status, viewsets
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import selectors, services
from accounts.ownership import OwnedQuerysetMixin
from accounts.serializers import (
    ApiKeyCreatedSerializer,
    ApiKeyInputSerializer,
    ApiKeyOutputSerializer,
    RegisterInputSerializer,
    UserOutputSerializer,
)
from config.errors import ApiError


class RegisterView(APIView):
    authentication_classes: list = []
    permission_classes = [permissions.AllowAny]

    @extend_schema(request=RegisterInputSerializer, responses={201: UserOutputSerializer})
    def post(self, request):
        if not settings.JUNCTION_ALLOW_REGISTRATION:
            raise ApiError("Registration is turned off on this server.", code="registration_closed", status_code=403)
        data = RegisterInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user = services.user_register(**data.validated_data)
        return Response(UserOutputSerializer(user).data, status=status.HTTP_201_CREATED)


class MeView(APIView):
    @extend_schema(responses=UserOutputSerializer)
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

    def owned_queryset(self, user):
        return selectors.api_key_list(user=user)

    @extend_schema(request=ApiKeyInputSerializer, responses={201: ApiKeyCreatedSerializer})
    def create(self, request):
        data = ApiKeyInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        created = services.api_key_create(user=request.user, **data.validated_data)
        return Response(ApiKeyCreatedSerializer(created).data, status=status.HTTP_201_CREATED)

    def perform_destroy(self, instance):
        services.api_key_revoke(api_key=instance)
