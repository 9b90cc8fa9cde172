"""Try one task type now with literal values (`POST /api/task-types/{type}/test/`)."""
from __future__ import annotations

import logging
import time
from typing import Any

from celery.exceptions import TimeoutError as CeleryTimeout
from django.conf import settings
from rest_framework import status

from config.errors import UNAVAILABLE, ApiError
from config.jsonsize import BoundedJsonError, encode_bounded
from integrations.models import Integration
from tasks_catalog.base import TaskFailed, output_error
from tasks_catalog.registry import UnknownTaskType, task_types
from tasks_catalog.sandbox import capturing_logs

logger = logging.getLogger(__name__)


def task_type_try(
    *, user, type_key: str, body: dict[str, Any], integration=None, timeout: float | None = None
) -> dict[str, Any]:
    """Run the type once; return {status, output, error, duration_ms} (and `logs` for code).

    Raises ApiError 404 for an unknown type and 400 naming `body.<field>` or `integration`
    for input that could never run; the task's own failure is a `failed` result, not an error.
    The trial is under a run's limits: the task's `timeout` (default JUNCTION_DEFAULT_TASK_TIMEOUT,
    at most JUNCTION_MAX_TASK_TIMEOUT), which every task type honours, and the output limit
    (JUNCTION_MAX_OUTPUT_BYTES, measured while encoding: an output past it fails the trial
    as it would fail the task).
    Types on a queue of their own (`code`) run on a worker of that queue, not in the API
    process; see `_trial_on_queue`.
    """
    try:
        task_type = task_types.get(type_key)
    except UnknownTaskType as exc:
        raise ApiError(str(exc), code="not_found", status_code=status.HTTP_404_NOT_FOUND) from None
    problems = {f"body.{name}": found for name, found in task_type.check_body(body).items()}
    if task_type.provider:
        owned = Integration.objects.filter(pk=integration, user=user, end_user__isnull=True).first() if integration else None
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
    timeout = min(timeout or settings.JUNCTION_DEFAULT_TASK_TIMEOUT, settings.JUNCTION_MAX_TASK_TIMEOUT)
    started = time.monotonic()
    arguments = dict(type_key=type_key, body=concrete, integration_id=str(integration) if integration else None,
                     user_id=str(user.id), timeout=timeout)
    if task_type.queue == settings.CELERY_TASK_DEFAULT_QUEUE:
        result = trial_run(**arguments)
    else:
        result = _trial_on_queue(queue=task_type.queue, arguments=arguments, timeout=timeout)
    return {**result, "duration_ms": int((time.monotonic() - started) * 1000)}


def _trial_on_queue(*, queue: str, arguments: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Send the trial to the type's own queue (code runs on code workers, never in the API);
    wait for its answer up to the task's timeout (plus the hard grace a worker gets).

    Raises ApiError 503 when the broker or the result backend cannot be reached. A trial no
    worker answered in time is a failed result, and its message expires unrun.
    """
    from tasks_catalog.tasks import try_task

    wait = timeout + settings.JUNCTION_HARD_TIMEOUT_GRACE
    try:
        pending = try_task.apply_async(
            kwargs=arguments, queue=queue, expires=wait, time_limit=wait,
            retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.5},
        )
    except UNAVAILABLE as exc:
        raise _unavailable("the broker", exc) from None
    try:
        # In the embedded mode the worker runs in this process, which Celery then treats as
        # inside a task: waiting is still right here, the trial never waits on itself.
        answer = pending.get(timeout=wait, disable_sync_subtasks=False, propagate=True)
    except CeleryTimeout:
        _revoke(pending)
        return {"status": "failed", "output": None,
                "error": f"no worker consuming the {queue!r} queue answered within {wait:g} s; the trial was "
                         f"dropped (is a worker running with -Q {queue}, and are they all busy?)"}
    except UNAVAILABLE as exc:
        raise _unavailable("the result backend", exc) from None
    except Exception as exc:  # the worker's task raised: a bug, reported as the trial's failure
        logger.error("trial on queue %s raised: %r", queue, exc)
        return {"status": "failed", "output": None, "error": f"the trial failed on the worker: {type(exc).__name__}"}
    pending.forget()
    return answer


def _revoke(pending) -> None:
    try:
        pending.revoke()
        pending.forget()
    except UNAVAILABLE:
        pass  # it expires anyway


def _unavailable(what: str, exc: BaseException) -> ApiError:
    logger.warning("trial: %s is unavailable: %r", what, exc)
    return ApiError(f"The task could not be tried: {what} is unavailable. Try again later.",
                    code="service_unavailable", status_code=status.HTTP_503_SERVICE_UNAVAILABLE)


def trial_run(
    *, type_key: str, body: dict[str, Any], integration_id: str | None, user_id: str, timeout: float
) -> dict[str, Any]:
    """Run a checked trial through the executor's path; return {status, output, error} (and
    `logs` for code). Runs in the API process or, for types on their own queue, on a worker.
    """
    with capturing_logs() as logs:
        result = _outcome(type_key=type_key, body=body, integration_id=integration_id, user_id=user_id,
                          timeout=timeout)
    if logs.text is not None:
        result["logs"] = logs.text
    return result


def _outcome(*, type_key: str, body: dict[str, Any], integration_id: str | None, user_id: str,
             timeout: float) -> dict[str, Any]:
    from interactions.executor import run_with_body

    try:
        output = run_with_body(task_type=task_types.get(type_key), body=body, integration_id=integration_id,
                               user_id=user_id, timeout=timeout)
        # Measured before the response renders it: a shared value (JMESPath's `[@,@]`) would
        # otherwise expand while rendering, past any limit. Within the limit, rendering it
        # again costs at most the limit.
        encode_bounded(output, settings.JUNCTION_MAX_OUTPUT_BYTES, max_depth=settings.JUNCTION_MAX_JSON_DEPTH)
        result = {"status": "completed", "output": output, "error": None}
    except TaskFailed as failure:
        result = {"status": "failed", "output": None, "error": str(failure)}
    except BoundedJsonError as exc:
        result = {"status": "failed", "output": None, "error": output_error(exc)}
    return result
