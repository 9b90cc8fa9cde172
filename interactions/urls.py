from django.urls import URLPattern, URLResolver, path
from rest_framework.routers import SimpleRouter

from config.routing import with_slashless
from interactions.views import EndUserSessionViewSet, InteractionViewSet, SessionViewSet
from interactions.waiting import waiting_view

router = SimpleRouter()
router.register("interactions", InteractionViewSet, basename="interaction")
router.register("sessions", SessionViewSet, basename="session")


def _waiting(pattern: URLPattern | URLResolver) -> URLPattern | URLResolver:
    """The run route, whose `Prefer: wait` is completed by the server (interactions/waiting.py)."""
    if not isinstance(pattern, URLPattern) or pattern.name != "interaction-run":
        return pattern
    return URLPattern(pattern.pattern, waiting_view(pattern.callback), pattern.default_args, pattern.name)


urlpatterns = with_slashless([
    *(_waiting(pattern) for pattern in router.urls),
    path("apps/<slug:slug>/sessions/", EndUserSessionViewSet.as_view({"get": "list"}), name="end-user-session-list"),
    path("apps/<slug:slug>/sessions/<uuid:pk>/", EndUserSessionViewSet.as_view({"get": "retrieve"}),
         name="end-user-session-detail"),
])
