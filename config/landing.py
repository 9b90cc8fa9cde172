"""The page at `/`: where to go from here (the admin, the API docs, the demo's endpoint)."""
from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse

from interactions.demo import DEMO_INTERACTION, DEMO_USERNAME
from interactions.models import Interaction


def landing(request: HttpRequest) -> HttpResponse:
    """Link the admin and the API docs, and the demo interaction's endpoint when it exists."""
    demo = (
        Interaction.objects.filter(user__username=DEMO_USERNAME, name=DEMO_INTERACTION)
        .only("id", "name", "is_active").first()
    )
    context = {
        "admin_url": reverse("admin:index"),
        "docs_url": reverse("swagger-ui"),
        "schema_url": reverse("schema"),
        "demo": demo,
    }
    if demo is not None:
        context.update(
            demo_run_url=request.build_absolute_uri(reverse("interaction-run", args=[demo.pk])),
            demo_endpoint_url=reverse("interaction-endpoint", args=[demo.pk]),
            demo_admin_url=reverse("admin:interactions_interaction_change", args=[demo.pk]),
        )
    return render(request, "landing.html", context)
