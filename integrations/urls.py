from django.urls import path
from rest_framework.routers import SimpleRouter

from integrations.views import (
    EndUserConnectView,
    EndUserIntegrationViewSet,
    IntegrationViewSet,
    OAuthCallbackView,
    ProviderAppViewSet,
    ProviderListView,
)

router = SimpleRouter()
router.register("integrations", IntegrationViewSet, basename="integration")
router.register("provider-apps", ProviderAppViewSet, basename="provider-app")
urlpatterns = [
    path("providers/", ProviderListView.as_view(), name="providers"),
    path("oauth/callback/", OAuthCallbackView.as_view(), name="oauth-callback"),
    *router.urls,
    path("apps/<slug:slug>/connect/<uuid:provider_app_id>/", EndUserConnectView.as_view(), name="end-user-connect"),
    path("apps/<slug:slug>/integrations/", EndUserIntegrationViewSet.as_view({"get": "list"}),
         name="end-user-integration-list"),
    path("apps/<slug:slug>/integrations/<uuid:pk>/", EndUserIntegrationViewSet.as_view(
        {"get": "retrieve", "delete": "destroy"}), name="end-user-integration-detail"),
]
