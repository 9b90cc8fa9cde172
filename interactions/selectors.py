"""Reads for interactions."""
from __future__ import annotations

import json
from typing import Any

from django.db.models import QuerySet

from accounts.models import User
from interactions.engine.definition import Definition, parse_definition
from interactions.engine.inputs import example_input, input_schema
from interactions.models import Interaction, InteractionVersion
from tasks_catalog.registry import find_task_type


def interaction_list(*, user: User) -> QuerySet[Interaction]:
    return Interaction.objects.filter(user=user).select_related("current_version")


def version_list(*, interaction: Interaction) -> QuerySet[InteractionVersion]:
    return interaction.versions.all()


def version_definition(*, version: InteractionVersion) -> Definition:
    """Parse a stored version (validated when saved; integrations are not re-checked)."""
    return parse_definition(version.tasks, task_type=find_task_type, integrations=None)


def interaction_endpoint(*, interaction: Interaction, run_url: str) -> dict[str, Any]:
    """Describe how to call the interaction: example body, its JSON Schema and a curl line."""
    definition = version_definition(version=interaction.current_version)
    body = example_input(definition.blanks)
    headers = {"Authorization": "Bearer <access token> (or: Api-Key <key>)", "Content-Type": "application/json"}
    payload = json.dumps(body).replace("'", "'\\''")
    curl = (
        f"curl -X POST '{run_url}' -H 'Authorization: Api-Key <key>' "
        f"-H 'Content-Type: application/json' -d '{payload}'"
    )
    return {
        "method": "POST",
        "url": run_url,
        "headers": headers,
        "body": body,
        "schema": input_schema(definition.blanks),
        "curl": curl,
    }
