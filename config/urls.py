from django.contrib import admin
from django.urls import URLPattern, URLResolver, include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from config import health, landing, metrics
from config.routing import route

# Django tries the routes in order and, for each one that fails, records what it tried: the
# interactions' routes come first, so that the run route, the hot path, is found after a few
# tries instead of sixty. No route of the others matches a path of theirs (`/api/interactions/…`,
# `/api/sessions/…`, `/api/apps/<slug>/sessions/…`) nor the reverse, so the order changes nothing
# else.
api: list[URLPattern | URLResolver] = [
    path("", include("interactions.urls")),
    path("auth/", include("accounts.urls")),
    path("", include("accounts.app_urls")),
    path("", include("tasks_catalog.urls")),
    path("", include("integrations.urls")),
    *route("schema/", SpectacularAPIView.as_view(), name="schema"),
    *route("docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
]

urlpatterns = [
    path("", landing.landing, name="landing"),
    path("api/", include(api)),
    path("admin/", admin.site.urls),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics.metrics_view, name="metrics"),
]

handler404 = "config.api_errors.handler404"
handler500 = "config.api_errors.handler500"
