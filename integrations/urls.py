from config.routing import Router, route

from integrations.views import (
    EndUserConnectView,
    EndUserIntegrationViewSet,
    IntegrationViewSet,
    OAuthCallbackView,
    ProviderAppViewSet,
    ProviderListView,
)

router = Router()
router.register("integrations", IntegrationViewSet, basename="integration")
router.register("provider-apps", ProviderAppViewSet, basename="provider-app")
urlpatterns = [
    *route("providers/", ProviderListView.as_view(), name="providers"),
    *route("oauth/callback/", OAuthCallbackView.as_view(), name="oauth-callback"),
    *router.urls,
    *route("apps/<slug:slug>/connect/<uuid:provider_app_id>/", EndUserConnectView.as_view(), name="end-user-connect"),
    *route("apps/<slug:slug>/integrations/", EndUserIntegrationViewSet.as_view({"get": "list"}),
           name="end-user-integration-list"),
    *route("apps/<slug:slug>/integrations/<uuid:pk>/", EndUserIntegrationViewSet.as_view(
        {"get": "retrieve", "delete": "destroy"}), name="end-user-integration-detail"),
]
