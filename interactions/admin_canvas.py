"""What the admin pages hand to the canvas script: the editor's, endpoint panel's and session viewer's settings.

The script (interactions/frontend/, built into static/interactions/canvas/) talks to the API
itself, same-origin with the admin's session and its CSRF token; these functions give it only
what the page already knows: the ids, the URLs (from `reverse`), the version's layout and the
form's validation errors placed by path (`tasks.<task>.body.<field>`). See docs/ui.md.
"""
from __future__ import annotations

import json
from typing import Any

from django.urls import reverse

from interactions.models import Interaction, Session

SESSION_ID = "00000000-0000-0000-0000-000000000000"  # replaced by the script


def _api_urls() -> dict[str, str]:
    return {
        "taskTypes": reverse("task-type-list"),
        "integrations": reverse("integration-list"),
        "sessionAdmin": reverse("admin:interactions_session_change", args=[SESSION_ID]),
        "session": reverse("session-detail", args=[SESSION_ID]),
        "sessionEvents": reverse("session-events", args=[SESSION_ID]),
        "sessionCancel": reverse("session-cancel", args=[SESSION_ID]),
        "sessionRetry": reverse("session-retry", args=[SESSION_ID]),
        "placeholder": SESSION_ID,
    }


def _posted_layout(form: Any) -> Any:
    """The layout the form shows: what was posted when it is redisplayed, else the version's."""
    if form.is_bound:
        try:
            return json.loads(form.data.get("layout") or "{}")
        except ValueError:
            return {}
    return form.initial.get("layout") or {}


def editor_config(*, form: Any, interaction: Interaction | None) -> dict[str, Any]:
    """Settings of the canvas editor and, on the change page, of the endpoint panel."""
    urls = _api_urls()
    config: dict[str, Any] = {
        "interaction": None,
        "layout": _posted_layout(form),
        "errors": getattr(form, "definition_errors", {}) if form.is_bound else {},
        "urls": urls,
    }
    if interaction is not None and interaction.pk:
        pk = interaction.pk
        config["interaction"] = {"id": str(pk), "name": interaction.name, "isActive": interaction.is_active}
        urls.update({
            "endpoint": reverse("interaction-endpoint", args=[pk]),
            "run": reverse("interaction-run", args=[pk]),
            "activate": reverse("interaction-activate", args=[pk]),
            "deactivate": reverse("interaction-deactivate", args=[pk]),
            "interaction": reverse("interaction-detail", args=[pk]),
            "sessions": reverse("admin:interactions_session_changelist") + f"?interaction__id__exact={pk}",
        })
    return config


def viewer_config(*, session: Session) -> dict[str, Any]:
    """Settings of the session viewer: the session, and the DAG of the version it ran."""
    version = session.version
    return {
        "session": str(session.pk),
        "tasks": version.tasks,
        "layout": version.layout,
        "urls": _api_urls(),
    }
