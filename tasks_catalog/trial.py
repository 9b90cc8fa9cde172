"""Try one task type now with literal values (`POST /api/task-types/{type}/test/`)."""
from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from rest_framework import status

from config.errors import ApiError
from config.jsonsize import BoundedJsonError, encode_bounded
from integrations.models import Integration
from tasks_catalog.base import TaskFailed, output_error
from tasks_catalog.registry import UnknownTaskType, task_types


def task_type_try(
    *, user, type_key: str, body: dict[str, Any], integration=None, timeout: float | None = None
) -> dict[str, Any]:
    """Run the type once; return {status, output, error, duration_ms}.

    Raises ApiError 404 for an unknown type and 400 naming `body.<field>` or `integration`
    for input that could never run; the task's own failure is a `failed` result, not an error.
    The trial is under a run's limits: the task's `timeout` (default JUNCTION_DEFAULT_TASK_TIMEOUT,
    at most JUNCTION_MAX_TASK_TIMEOUT), which every task type honours, and the output limit
    (JUNCTION_MAX_OUTPUT_BYTES, measured while encoding: an output past it fails the trial
    as it would fail the task).
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
            user_id=user.id, timeout=min(timeout or settings.JUNCTION_DEFAULT_TASK_TIMEOUT,
                                         settings.JUNCTION_MAX_TASK_TIMEOUT),
        )
        # Measured before the response renders it: a shared value (JMESPath's `[@,@]`) would
        # otherwise expand while rendering, past any limit. Within the limit, rendering it
        # again costs at most the limit.
        encode_bounded(output, settings.JUNCTION_MAX_OUTPUT_BYTES, max_depth=settings.JUNCTION_MAX_JSON_DEPTH)
        result = {"status": "completed", "output": output, "error": None}
    except TaskFailed as failure:
        result = {"status": "failed", "output": None, "error": str(failure)}
    except BoundedJsonError as exc:
        result = {"status": "failed", "output": None, "error": output_error(exc)}
    return {**result, "duration_ms": int((time.monotonic() - started) * 1000)}

