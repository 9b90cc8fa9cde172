from django.urls import URLPattern
from rest_framework.routers import SimpleRouter

from interactions.views import InteractionViewSet, SessionViewSet
from interactions.waiting import async_view

router = SimpleRouter()
router.register("interactions", InteractionViewSet, basename="interaction")
router.register("sessions", SessionViewSet, basename="session")


def _waiting(pattern: URLPattern) -> URLPattern:
    """The run route as an async view: a `Prefer: wait` holds no thread (interactions/waiting.py)."""
    if pattern.name != "interaction-run":
        return pattern
    return URLPattern(pattern.pattern, async_view(pattern.callback), pattern.default_args, pattern.name)


urlpatterns = [_waiting(pattern) for pattern in router.urls]
