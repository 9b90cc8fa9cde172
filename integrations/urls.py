from django.urls import path
from rest_framework.routers import SimpleRouter

from integrations.views import IntegrationViewSet, ProviderListView

router = SimpleRouter()
router.register("integrations", IntegrationViewSet, basename="integration")
urlpatterns = [path("providers/", ProviderListView.as_view(), name="providers"), *router.urls]
