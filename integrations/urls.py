from config.routing import Router, route

from integrations.views import IntegrationViewSet, ProviderListView

router = Router()
router.register("integrations", IntegrationViewSet, basename="integration")
urlpatterns = [*route("providers/", ProviderListView.as_view(), name="providers"), *router.urls]
