from rest_framework.routers import SimpleRouter

from interactions.views import InteractionViewSet

router = SimpleRouter()
router.register("interactions", InteractionViewSet, basename="interaction")
urlpatterns = router.urls
