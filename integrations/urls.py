from django.urls import path
from rest_framework.routers import SimpleRouter

from integrations.views import (
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
]
