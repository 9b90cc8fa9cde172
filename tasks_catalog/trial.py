"""Try one task type now with literal values (`POST /api/task-types/{type}/test/`)."""
from __future__ import annotations

import logging
import time
from typing import Any

from celery.exceptions import TimeoutError as CeleryTimeout
from django.conf import settings

from config.errors import UNAVAILABLE, InvalidInput, NotFound, RateLimited, Unavailable
from config.queues import Queue
from config.jsonsize import BoundedJsonError, encode_bounded
from integrations.models import Integration
from interactions import slots
from interactions.statuses import COMPLETED, FAILED
from tasks_catalog.base import TaskFailed, TaskType, output_error
from tasks_catalog.registry import UnknownTaskType, task_types
from tasks_catalog.sandbox import capturing_logs

logger = logging.getLogger(__name__)
# What a trial refused for want of a slow-task slot is told to wait (a hint: tasks end at their pace).
TRIAL_RETRY_AFTER = 2


def task_type_try(
    *, user, type_key: str, body: dict[str, Any], integration=None, timeout: float | None = None
) -> dict[str, Any]:
    """Run the type once; return {status, output, error, duration_ms} (and `logs` for code).

    Raises NotFound for an unknown type and InvalidInput naming `body.<field>` or `integration`
    for input that could never run; the task's own failure is a `failed` result, not an error.
    The trial is under a run's limits: the task's `timeout` (default JUNCTION_DEFAULT_TASK_TIMEOUT,
    at most JUNCTION_MAX_TASK_TIMEOUT), which every task type honours, and the output limit
    (JUNCTION_MAX_OUTPUT_BYTES, measured while encoding: an output past it fails the trial
    as it would fail the task).
    Types on a queue of their own (`code`) run on a worker of that queue, not in the API
    process; see `_trial_on_queue`. A slow type takes one of the user's slow-task slots for the
    trial (interactions/slots.py): RateLimited (429 `too_many_slow_tasks`) when none is free.
    """
    try:
        task_type = task_types.get(type_key)
    except UnknownTaskType as exc:
        raise NotFound(str(exc)) from None
    problems = task_type.check_body(body, prefix="body.")
    if task_type.provider:
        owned = Integration.objects.filter(pk=integration, user=user, end_user__isnull=True).first() if integration else None
        if owned is None:
            problems["integration"] = [f"Task type {type_key!r} needs one of your {task_type.provider!r} integrations."]
        elif owned.provider != task_type.provider:
            problems["integration"] = [f"Integration is of provider {owned.provider!r}, not {task_type.provider!r}."]
    elif integration:
        problems["integration"] = [f"Task type {type_key!r} takes no integration."]
    if problems:
        raise InvalidInput(details=problems)

    concrete = {spec.name: body.get(spec.name, spec.default) for spec in task_type.fields}
    timeout = min(timeout or settings.JUNCTION_DEFAULT_TASK_TIMEOUT, settings.JUNCTION_MAX_TASK_TIMEOUT)
    started = time.monotonic()
    arguments: dict[str, Any] = dict(type_key=type_key, body=concrete, integration_id=str(integration) if integration else None,
                     user_id=str(user.id), timeout=timeout)
    slot = _slot(task_type, user_id=user.id, timeout=timeout)
    try:
        if task_type.queue == Queue.DEFAULT:
            result = trial_run(**arguments)
        else:
            result = _trial_on_queue(queue=str(task_type.queue), arguments=arguments, timeout=timeout)
    finally:
        if slot is not None:
            slot.release()
    return {**result, "duration_ms": int((time.monotonic() - started) * 1000)}


def _slot(task_type: TaskType, *, user_id: Any, timeout: float) -> slots.Slot | None:
    """Take a slow-task slot for a trial of a slow type (a trial holds an API or a worker process
    for up to its timeout, as the task would); raise RateLimited when the user's are all held."""
    if not task_type.slow:
        return None
    hold = timeout + settings.JUNCTION_HARD_TIMEOUT_GRACE + settings.JUNCTION_LEASE_GRACE
    slot = slots.take(user_id=user_id, lease_seconds=hold, label=f"trial.{task_type.key}")
    if slot is None:
        limit = settings.JUNCTION_MAX_SLOW_TASKS_PER_USER
        raise RateLimited(
            f"You have {limit} slow tasks running, the most allowed (JUNCTION_MAX_SLOW_TASKS_PER_USER): "
            f"try again when some have finished.", code="too_many_slow_tasks", retry_after=TRIAL_RETRY_AFTER,
        )
    return slot


def _trial_on_queue(*, queue: str, arguments: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Send the trial to the type's own queue (code runs on code workers, never in the API);
    wait for its answer up to the task's timeout (plus the hard grace a worker gets).

    Raises Unavailable when the broker or the result backend cannot be reached. A trial no
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
        return {"status": FAILED, "output": None,
                "error": f"no worker consuming the {queue!r} queue answered within {wait:g} s; the trial was "
                         f"dropped (is a worker running with -Q {queue}, and are they all busy?)"}
    except UNAVAILABLE as exc:
        raise _unavailable("the result backend", exc) from None
    except Exception as exc:  # the worker's task raised: a bug, reported as the trial's failure
        logger.error("trial on queue %s raised: %r", queue, exc)
        return {"status": FAILED, "output": None, "error": f"the trial failed on the worker: {type(exc).__name__}"}
    pending.forget()
    return answer


def _revoke(pending) -> None:
    try:
        pending.revoke()
        pending.forget()
    except UNAVAILABLE:
        pass  # it expires anyway


def _unavailable(what: str, exc: BaseException) -> Unavailable:
    logger.warning("trial: %s is unavailable: %r", what, exc)
    return Unavailable(f"The task could not be tried: {what} is unavailable. Try again later.")


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
        result = {"status": COMPLETED, "output": output, "error": None}
    except TaskFailed as failure:
        result = {"status": FAILED, "output": None, "error": str(failure)}
    except BoundedJsonError as exc:
        result = {"status": FAILED, "output": None, "error": output_error(exc)}
    return result
