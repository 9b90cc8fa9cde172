from rest_framework.routers import SimpleRouter

from interactions.views import InteractionViewSet, SessionViewSet

router = SimpleRouter()
router.register("interactions", InteractionViewSet, basename="interaction")
router.register("sessions", SessionViewSet, basename="session")
urlpatterns = router.urls
