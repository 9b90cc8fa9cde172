"""Run one task of a session, and finish a session: the services behind the Celery tasks.

Each step claims its work with a conditional UPDATE (`status = pending` → `running`), so a
message delivered twice does nothing the second time, and records its result only while the
task is still `running`, so a cancel that came in meanwhile wins. No exception of a task type
escapes: failures are recorded as results, so a chord's header never raises and its body
always runs.
"""
from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from celery.exceptions import SoftTimeLimitExceeded
from jmespath.exceptions import JMESPathError
from django.conf import settings
from django.db.models import F
from django.utils import timezone

from integrations.models import Integration
from integrations.services import integration_credentials
from interactions.compiled import compiled_version
from interactions.engine.execution import Record, readiness, resolve_body, session_outcome
from interactions.models import Session, TaskRun
from tasks_catalog.base import TaskContext, TaskFailed, TaskType
from tasks_catalog.registry import find_task_type

logger = logging.getLogger(__name__)
Status = TaskRun.Status


@dataclass(frozen=True)
class RetryLater(Exception):
    """The task failed transiently and has retries left: run it again after `countdown` s."""

    countdown: float


def backoff(attempt: int) -> float:
    """Exponential backoff with full jitter: up to 1, 2, 4 … seconds (capped at 60)."""
    return random.uniform(0, min(60.0, 2.0 ** (attempt - 1)))


def _record(session_id: UUID, name: str, status: str, output: Any = None, error: str | None = None) -> None:
    now = timezone.now()
    TaskRun.objects.filter(session_id=session_id, name=name, status=Status.RUNNING).update(
        status=status, output=output, error=error, finished_at=now, updated_at=now
    )


def _run(task_type, body: dict[str, Any], context: TaskContext) -> Any:
    """Call the task type; turn every exception into TaskFailed with a readable message."""
    try:
        output = task_type.run(body, context)
    except TaskFailed:
        raise
    except SoftTimeLimitExceeded:
        raise TaskFailed(f"timed out after {context.timeout:g} s") from None
    except Exception as exc:  # a bug in a task type must fail the task, not the chord
        logger.exception("task type %s raised", task_type.key)
        raise TaskFailed(f"{type(exc).__name__}: {exc}") from None
    return output


def run_with_body(
    *, task_type: TaskType, body: dict[str, Any], integration_id: str | None, user_id, timeout: float
) -> Any:
    """Check a concrete body, load the integration's credentials, run the task type.

    Raises TaskFailed naming the field for a bad value, a missing integration, or the task's
    own failure.
    """
    problems = task_type.check_body(body)
    if problems:
        raise TaskFailed("; ".join(f"{name}: {' '.join(found)}" for name, found in problems.items()))
    credentials: dict[str, Any] = {}
    if integration_id:
        integration = Integration.objects.filter(pk=integration_id, user_id=user_id).first()
        if integration is None:
            raise TaskFailed(f"integration {integration_id} no longer exists")
        credentials = integration_credentials(integration=integration)
    return _run(task_type, body, TaskContext(credentials=credentials, timeout=timeout))


def task_execute(*, session_id: UUID, name: str) -> None:
    """Run task `name` of a session if it is still pending; record its outcome.

    Raises RetryLater when a transient failure has retries left (the task is pending again).
    """
    session = (
        Session.objects.select_related("version")
        .only("id", "status", "input", "user_id", "version__id", "version__tasks")
        .get(pk=session_id)
    )
    now = timezone.now()
    pending = TaskRun.objects.filter(session_id=session_id, name=name, status=Status.PENDING)
    if session.status in Session.TERMINAL:
        pending.update(status=Status.CANCELLED, finished_at=now, updated_at=now)
        return
    compiled = compiled_version(session.version.id, session.version.tasks)
    spec = compiled.definition.tasks[name]
    records = {
        run["name"]: Record(run["status"], run["output"], run["error"])
        for run in TaskRun.objects.filter(session_id=session_id, name__in=compiled.needs[name]).values(
            "name", "status", "output", "error"
        )
    }
    if not readiness(spec, {task: record.status for task, record in records.items()}):
        pending.update(status=Status.SKIPPED, finished_at=now, updated_at=now)
        return
    claimed = pending.update(
        status=Status.RUNNING, attempts=F("attempts") + 1, started_at=now, updated_at=now
    )
    if not claimed:
        return  # done already (a redelivered or duplicate message), or cancelled
    if session.status == Session.Status.QUEUED:
        Session.objects.filter(pk=session_id, status=Session.Status.QUEUED).update(
            status=Session.Status.RUNNING, started_at=now, updated_at=now
        )

    timeout = spec.timeout or settings.JUNCTION_DEFAULT_TASK_TIMEOUT
    try:
        try:
            body = resolve_body(spec, compiled.defaults[name], session.input, records)
        except JMESPathError as exc:
            raise TaskFailed(f"a reference could not be resolved: {exc}") from None
        output = run_with_body(
            task_type=find_task_type(spec.type), body=body, integration_id=spec.integration,
            user_id=session.user_id, timeout=timeout,
        )
    except TaskFailed as failure:
        attempts = TaskRun.objects.filter(session_id=session_id, name=name).values_list("attempts", flat=True).first()
        if failure.transient and attempts is not None and attempts <= spec.retries:
            TaskRun.objects.filter(session_id=session_id, name=name, status=Status.RUNNING).update(
                status=Status.PENDING, error=str(failure), updated_at=timezone.now()
            )
            raise RetryLater(backoff(attempts)) from None
        _record(session_id, name, Status.FAILED, error=str(failure))
        return
    _record(session_id, name, Status.COMPLETED, output=output)


def session_finish(*, session_id: UUID) -> str:
    """Compute and store the session's status and result once every task has ended.

    Tasks that never ran (their message was lost) are marked skipped here only if the
    session is being finished by its own canvas; returns the final status.
    """
    session = Session.objects.select_related("version").get(pk=session_id)
    if session.status in Session.TERMINAL:
        return session.status
    compiled = compiled_version(session.version.id, session.version.tasks)
    runs = {
        run["name"]: Record(run["status"], run["output"], run["error"])
        for run in session.task_runs.values("name", "status", "output", "error")
    }
    outcome = session_outcome(compiled.definition, runs)
    error = None
    if outcome.unhandled:
        error = "unhandled failure in " + ", ".join(
            f"{name}: {runs[name].error}" for name in outcome.unhandled
        )
    now = timezone.now()
    Session.objects.filter(pk=session_id, status__in=[Session.Status.QUEUED, Session.Status.RUNNING]).update(
        status=outcome.status, result=outcome.result, error=error, finished_at=now, updated_at=now
    )
    return outcome.status
