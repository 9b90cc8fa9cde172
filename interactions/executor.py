"""Run one task of a session, and finish a session: the services behind the Celery tasks.

Delivery is at least once (late acks, requeue on worker loss, the sweeper's resumes), so
every step is idempotent:
- a task is claimed with a conditional UPDATE (`pending` → `running`, attempts + 1, a lease
  until its hard time limit has surely passed). A second delivery finds it claimed: while the
  lease holds it waits (`RetryLater`), once the lease ran out (the claimant died) it takes the
  task over, and a task that lost its worker `JUNCTION_MAX_WORKER_LOSSES` times fails as a
  poison task instead of looping forever;
- a delivery that finds its task already ended raises `Duplicate`: the Celery task then
  ignores the message, so successors fire once and a chord's join is not counted twice;
- results are recorded only while the task is still `running` under this claim, so a cancel
  that came in meanwhile wins;
- no exception of a task type escapes: failures are results, so a chord never breaks.
"""
from __future__ import annotations

import json
import logging
import random
import time
import traceback
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from uuid import UUID

from celery.exceptions import SoftTimeLimitExceeded
from jmespath.exceptions import JMESPathError
from django.conf import settings
from django.db import DataError, transaction
from django.db.models import F
from django.utils import timezone

from config import metrics
from integrations.encryption import DecryptionError
from integrations.models import Integration
from integrations.providers import providers
from integrations.services import integration_credentials
from interactions.compiled import CompiledVersion, compiled_version
from interactions.engine.execution import TERMINAL, Record, readiness, resolve_body, session_outcome
from interactions.models import Session, TaskRun
from interactions.sessions import announce_end
from tasks_catalog.base import TaskContext, TaskFailed, TaskType
from tasks_catalog.registry import find_task_type

logger = logging.getLogger(__name__)
Status = TaskRun.Status


class Duplicate(Exception):
    """This delivery's task has already ended (or been taken over): fire nothing."""


@dataclass(frozen=True)
class RetryLater(Exception):
    """Deliver this task again after `countdown` s (a transient failure with retries left, a
    predecessor not yet ended, or a claim held by a delivery that may still be alive)."""

    countdown: float


def backoff(attempt: int) -> float:
    """Exponential backoff with full jitter: up to 1, 2, 4 … seconds (capped at 60)."""
    return random.uniform(0, min(60.0, 2.0 ** (attempt - 1)))


def lease_seconds(timeout: float) -> float:
    return timeout + settings.JUNCTION_HARD_TIMEOUT_GRACE + settings.JUNCTION_LEASE_GRACE


def _record(session_id: UUID, name: str, attempt: int, status: str, output: Any = None, error: str | None = None) -> str:
    """Store the task's outcome if this claim (`attempt`) still holds it; count its size.

    Returns the status stored (a too large or unstorable output turns into `failed`).
    """
    now = timezone.now()
    try:
        encoded = json.dumps(output, separators=(",", ":"), allow_nan=False) if output is not None else ""
    except (TypeError, ValueError) as exc:
        encoded, output, status, error = "", None, Status.FAILED, f"output is not JSON: {exc}"
    size = len(encoded)
    if size > settings.JUNCTION_MAX_OUTPUT_BYTES:
        status, output, size = Status.FAILED, None, 0
        error = f"output too large: more than {settings.JUNCTION_MAX_OUTPUT_BYTES} bytes"
    try:
        with transaction.atomic():  # the size and the result are counted together or not at all
            return _store(session_id, name, attempt, status, output, error, size, now)
    except DataError as exc:
        # Valid JSON the database refuses (PostgreSQL's jsonb has no NUL character): a
        # permanent failure of this output, not an outage to retry.
        with transaction.atomic():
            return _store(session_id, name, attempt, Status.FAILED, None,
                          f"output cannot be stored: {str(exc).splitlines()[0]}", 0, now)


def _store(session_id, name, attempt, status, output, error, size, now) -> str:
    # The session's row doubles as its progress clock for the sweeper, and keeps its size.
    grown = Session.objects.filter(
        pk=session_id, size_bytes__lte=settings.JUNCTION_MAX_SESSION_BYTES - size
    ).update(size_bytes=F("size_bytes") + size, updated_at=now)
    if not grown:
        Session.objects.filter(pk=session_id).update(updated_at=now)
        status, output = Status.FAILED, None
        error = f"session too large: its outputs exceed {settings.JUNCTION_MAX_SESSION_BYTES} bytes"
    TaskRun.objects.filter(session_id=session_id, name=name, status=Status.RUNNING, attempts=attempt).update(
        status=status, output=output, error=error, finished_at=now, updated_at=now, lease_expires_at=None
    )
    return status


def _redact(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def _run(task_type, body: dict[str, Any], context: TaskContext, secrets: list[str]) -> Any:
    """Call the task type; turn every exception into TaskFailed with a readable message.

    The integration's secret values are cut out of every message and log line: a library's
    exception may quote what it was given.
    """
    try:
        output = task_type.run(body, context)
    except TaskFailed as failure:
        if not secrets:
            raise
        raise TaskFailed(_redact(str(failure), secrets), transient=failure.transient) from None
    except SoftTimeLimitExceeded:
        raise TaskFailed(f"timed out after {context.timeout:g} s") from None
    except Exception as exc:  # a bug in a task type must fail the task, not the chord
        logger.error("task type %s raised:\n%s", task_type.key, _redact(traceback.format_exc(), secrets))
        raise TaskFailed(_redact(f"{type(exc).__name__}: {exc}", secrets)) from None
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
        try:
            credentials = integration_credentials(integration=integration)
        except DecryptionError:
            raise TaskFailed(
                f"the secrets of integration {integration.name!r} cannot be decrypted with the "
                f"server's keys (JUNCTION_ENCRYPTION_KEYS changed?)"
            ) from None
    secrets = []
    if credentials:
        secret_fields = providers.get(integration.provider).secret_fields
        secrets = sorted((str(v) for k, v in credentials.items() if k in secret_fields and v), key=len, reverse=True)
    return _run(task_type, body, TaskContext(credentials=credentials, timeout=timeout), secrets)


def _claim(session: Session, name: str, own: dict[str, Any], timeout: float, now) -> int:
    """Claim the task for this delivery; return the attempt number it runs as (0: ended here).

    `own` is the task's row as read just before. One transaction takes the claim and marks a
    queued session running. Raises Duplicate if the task has ended, RetryLater while another
    claim's lease holds.
    """
    lease = now + timedelta(seconds=lease_seconds(timeout))
    runs = TaskRun.objects.filter(session_id=session.pk, name=name)
    if own["status"] == Status.PENDING:
        with transaction.atomic():
            # Conditional on the row as read: if anything changed meanwhile, no claim.
            if runs.filter(status=Status.PENDING, attempts=own["attempts"]).update(
                status=Status.RUNNING, attempts=own["attempts"] + 1, started_at=now, updated_at=now,
                lease_expires_at=lease,
            ):
                if session.status == Session.Status.QUEUED:
                    Session.objects.filter(pk=session.pk, status=Session.Status.QUEUED).update(
                        status=Session.Status.RUNNING, started_at=now, updated_at=now
                    )
                return own["attempts"] + 1
        own = runs.values("status", "attempts", "lease_expires_at").get()
        if own["status"] == Status.PENDING:
            raise RetryLater(0.1)  # a retry gave the claim back just now: claim it afresh
    if own["status"] != Status.RUNNING:
        raise Duplicate
    if own["lease_expires_at"] and own["lease_expires_at"] > now:
        raise RetryLater((own["lease_expires_at"] - now).total_seconds() + 0.5)
    # The claimant's lease ran out: its worker died mid-task. Take over, unless it keeps dying.
    if own["attempts"] >= settings.JUNCTION_MAX_WORKER_LOSSES:
        _record(session.pk, name, own["attempts"], Status.FAILED, error=(
            f"the worker running this task was lost {own['attempts']} times; "
            f"giving up (a task that kills its worker?)"
        ))
        return 0
    if not runs.filter(status=Status.RUNNING, attempts=own["attempts"]).update(
        attempts=own["attempts"] + 1, started_at=now, updated_at=now, lease_expires_at=lease
    ):
        raise Duplicate  # another delivery took it over first
    return own["attempts"] + 1


def task_execute(*, session_id: UUID, name: str) -> None:
    """Run task `name` of a session once; record its outcome.

    Raises Duplicate when the task has already ended (the caller fires nothing), RetryLater
    when it must be delivered again later.
    """
    session = Session.objects.only("id", "status", "input", "user_id", "version_id").get(pk=session_id)
    now = timezone.now()
    pending = TaskRun.objects.filter(session_id=session_id, name=name, status=Status.PENDING)
    if session.status in Session.TERMINAL:
        pending.update(status=Status.CANCELLED, finished_at=now, updated_at=now)
        return
    compiled = compiled_version(session.version_id)
    spec = compiled.definition.tasks[name]
    # One query reads the records this task needs and its own row.
    rows = {
        run["name"]: run
        for run in TaskRun.objects.filter(session_id=session_id, name__in=compiled.needs[name] | {name}).values(
            "name", "status", "output", "error", "attempts", "lease_expires_at"
        )
    }
    own = rows.pop(name)
    records = {task: Record(run["status"], run["output"], run["error"]) for task, run in rows.items()}
    statuses = {task: record.status for task, record in records.items()}
    if any(statuses.get(pred) not in TERMINAL for pred in spec.execute_after):
        # A predecessor has not ended: a resumed session, or a chord Celery fired early (it
        # does for a header holding a chain that ends in a group). Look again shortly.
        raise RetryLater(0.2)
    if not readiness(spec, statuses):
        if not pending.update(status=Status.SKIPPED, finished_at=now, updated_at=now):
            raise Duplicate
        _finish_if_last(session_id, compiled, name)
        return

    timeout = spec.timeout or settings.JUNCTION_DEFAULT_TASK_TIMEOUT
    attempt = _claim(session, name, own, timeout, now)
    if not attempt:
        return
    started = time.monotonic()
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
        if failure.transient and attempt <= spec.retries:
            # Give the claim back; the next delivery claims it again as attempt + 1.
            TaskRun.objects.filter(session_id=session_id, name=name, status=Status.RUNNING, attempts=attempt).update(
                status=Status.PENDING, error=str(failure), updated_at=timezone.now(), lease_expires_at=None
            )
            raise RetryLater(backoff(attempt)) from None
        status = _record(session_id, name, attempt, Status.FAILED, error=str(failure))
    else:
        status = _record(session_id, name, attempt, Status.COMPLETED, output=output)
    metrics.task_finished(spec.type, status, time.monotonic() - started)
    _finish_if_last(session_id, compiled, name)


def _finish_if_last(session_id: UUID, compiled: CompiledVersion, name: str) -> None:
    """End the session if this task, one without dependants, was the last to end.

    Only such a task can be the last (a task's dependants end after it). Each of them checks
    after its own record committed, so when two end at once at least one sees the other ended:
    the session is finished once, with no finishing message and no chord into one.
    """
    if name not in compiled.sinks:
        return
    if TaskRun.objects.filter(session_id=session_id, status__in=(Status.PENDING, Status.RUNNING)).exists():
        return
    session_finish(session_id=session_id)


def session_finish(*, session_id: UUID) -> str:
    """Compute and store the session's status and result once every task has ended.

    Raises RetryLater while a task has not ended; does nothing when the session already
    ended (cancelled, timed out). Returns the status.
    """
    session = Session.objects.only("id", "status", "version_id").get(pk=session_id)
    if session.status in Session.TERMINAL:
        return session.status
    compiled = compiled_version(session.version_id)
    runs = {
        run["name"]: Record(run["status"], run["output"], run["error"])
        for run in session.task_runs.values("name", "status", "output", "error")
    }
    if any(record.status not in TERMINAL for record in runs.values()):
        # The canvas orders the finish after every task, so a task is still being retried or
        # taken over (or a resumed session's other canvas runs): look again later. The
        # session's deadline and the sweeper bound this.
        raise RetryLater(0.5)
    outcome = session_outcome(compiled.definition, runs)
    error = None
    if outcome.unhandled:
        error = "unhandled failure in " + ", ".join(
            f"{name}: {runs[name].error}" for name in outcome.unhandled
        )
    now = timezone.now()
    if Session.objects.filter(pk=session_id, status__in=[Session.Status.QUEUED, Session.Status.RUNNING]).update(
        status=outcome.status, result=outcome.result, error=error, finished_at=now, updated_at=now
    ):
        metrics.session_finished(outcome.status)
        announce_end(session_id=session_id, status=outcome.status)
    return outcome.status
