"""Try one task type now with literal values (`POST /api/task-types/{type}/test/`)."""
from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from rest_framework import status

from config.errors import ApiError
from integrations.models import Integration
from tasks_catalog.base import TaskFailed
from tasks_catalog.registry import UnknownTaskType, task_types


def task_type_try(*, user, type_key: str, body: dict[str, Any], integration=None) -> dict[str, Any]:
    """Run the type once; return {status, output, error, duration_ms}.

    Raises ApiError 404 for an unknown type and 400 naming `body.<field>` or `integration`
    for input that could never run; the task's own failure is a `failed` result, not an error.
    """
    from interactions.executor import run_with_body

    try:
        task_type = task_types.get(type_key)
    except UnknownTaskType as exc:
        raise ApiError(str(exc), code="not_found", status_code=status.HTTP_404_NOT_FOUND) from None
    problems = {f"body.{name}": found for name, found in task_type.check_body(body).items()}
    if task_type.provider:
        owned = Integration.objects.filter(pk=integration, user=user).first() if integration else None
        if owned is None:
            problems["integration"] = [f"Task type {type_key!r} needs one of your {task_type.provider!r} integrations."]
        elif owned.provider != task_type.provider:
            problems["integration"] = [f"Integration is of provider {owned.provider!r}, not {task_type.provider!r}."]
    elif integration:
        problems["integration"] = [f"Task type {type_key!r} takes no integration."]
    if problems:
        raise ApiError("Invalid input. " + "; ".join(f"{k}: {v[0]}" for k, v in problems.items()),
                       code="validation_error", details=problems)

    concrete = {spec.name: body.get(spec.name, spec.default) for spec in task_type.fields}
    started = time.monotonic()
    try:
        output = run_with_body(
            task_type=task_type, body=concrete, integration_id=str(integration) if integration else None,
            user_id=user.id, timeout=settings.JUNCTION_DEFAULT_TASK_TIMEOUT,
        )
        result = {"status": "completed", "output": output, "error": None}
    except TaskFailed as failure:
        result = {"status": "failed", "output": None, "error": str(failure)}
    return {**result, "duration_ms": int((time.monotonic() - started) * 1000)}
