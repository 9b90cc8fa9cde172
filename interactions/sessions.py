"""Writes for sessions: start a run, cancel it, retry it. (Reads are in `selectors.py`.)

Work is enqueued only once the transaction that created the session commits
(`transaction.on_commit`), so a rolled-back request enqueues nothing and no worker ever
looks for a row that is not there yet.
"""
from __future__ import annotations

import hashlib
import json
import logging
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework import status

from accounts.models import User
from config import metrics
from config.errors import ApiError, Conflict
from interactions.compiled import CompiledVersion, compiled_version
from interactions.engine.canvas import Plan, compile_plan, to_canvas
from interactions.engine.inputs import check_input
from interactions.models import Interaction, Session, TaskRun
from tasks_catalog.registry import find_task_type

logger = logging.getLogger(__name__)
IDEMPOTENCY_WINDOW = timedelta(hours=24)
ACTIVE = (Session.Status.QUEUED, Session.Status.RUNNING)


def task_message_id(session_id: str, name: str) -> str:
    """The Celery task id of a session's task: stable, so it can be revoked by name."""
    return f"{session_id}.{name}"


def _signature_for(session_id: str, compiled: CompiledVersion):
    from interactions.tasks import run_task

    def make(name: str):
        spec = compiled.definition.tasks[name]
        timeout = spec.timeout or settings.JUNCTION_DEFAULT_TASK_TIMEOUT
        return run_task.si(session_id, name).set(
            task_id=task_message_id(session_id, name),
            queue=find_task_type(spec.type).queue,
            # Prefork workers enforce these; task types also honour the timeout themselves.
            soft_time_limit=timeout,
            time_limit=timeout + settings.JUNCTION_HARD_TIMEOUT_GRACE,
        )

    return make


def dispatch_plan(*, session_id: str, compiled: CompiledVersion, plan: Plan | None) -> None:
    """Send a plan's canvas to the broker; with no plan (every task ended), the finishing task.

    The canvas needs no finishing task: the session's last task ends it. If the broker is
    unreachable the session stays queued in PostgreSQL and the sweeper sends it once the broker
    is back: the caller's request still succeeds.
    """
    from interactions.tasks import finish_session

    if plan is None:
        canvas = finish_session.si(session_id).set(queue="default")
    else:
        canvas = to_canvas(plan, _signature_for(session_id, compiled))
    try:
        canvas.apply_async()
    except Exception:  # the broker is down: kombu raises its own and redis' errors
        logger.exception("could not enqueue session %s; the sweeper will resume it", session_id)


def remaining_plan(*, compiled: CompiledVersion, unfinished: set[str]) -> Plan | None:
    """Plan only the `unfinished` tasks of a DAG (None if there are none).

    Tasks that already ended must not be sent again: their delivery would be ignored as a
    duplicate and the successors chained after it would never fire.
    """
    predecessors = {
        name: {pred for pred in compiled.definition.tasks[name].execute_after if pred in unfinished}
        for name in unfinished
    }
    return compile_plan(predecessors) if predecessors else None


def session_dispatch(*, session: Session, compiled: CompiledVersion) -> None:
    """Send the whole session (call after the creating transaction commits)."""
    dispatch_plan(session_id=str(session.id), compiled=compiled, plan=compiled.plan)


def announce_end(*, session_id, status: str) -> None:
    """Tell callers waiting with `Prefer: wait` that the session ended (see `waiting.py`).

    The end is stored as the Celery result whose id is the session's id: on Redis that is a
    pub/sub message to every waiter. Best effort: a waiter that misses it answers 202.
    """
    from config.celery import app

    try:
        app.backend.store_result(str(session_id), status, "SUCCESS")
    except Exception:  # the result backend is down: waiters time out into a 202
        logger.warning("could not announce the end of session %s", session_id, exc_info=True)


def revoke_running(*, session_id, names: list[str]) -> None:
    """Ask the workers to stop these tasks of a session (prefork workers terminate them)."""
    if not names:
        return
    from config.celery import app

    try:
        app.control.revoke([task_message_id(str(session_id), name) for name in names], terminate=True)
    except Exception:  # best effort: the tasks' results are discarded anyway
        logger.warning("could not broadcast the revoke of %s", names, exc_info=True)


def request_hash(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _existing_for_key(user: User, interaction: Interaction, key: str, digest: str) -> Session | None:
    found = (
        Session.objects.filter(
            user=user, interaction=interaction, idempotency_key=key,
            created_at__gte=timezone.now() - IDEMPOTENCY_WINDOW,
        ).first()
    )
    if found is not None and found.request_hash != digest:
        raise ApiError(
            "This Idempotency-Key was used with a different request body.",
            code="idempotency_conflict", status_code=status.HTTP_422_UNPROCESSABLE_ENTITY,
            details={"Idempotency-Key": ["Already used with a different body."]},
        )
    return found


def _deadline(interaction: Interaction):
    seconds = interaction.deadline_seconds or settings.JUNCTION_SESSION_DEADLINE
    return timezone.now() + timedelta(seconds=seconds)


def session_start(
    *, user: User, interaction: Interaction, data: Any, idempotency_key: str | None = None
) -> tuple[Session, bool]:
    """Start a session of the interaction's current version; return it and whether it is new.

    Raises Conflict (409) if the interaction is inactive, ApiError 400 naming `<task>.<field>`
    for a bad input, 422 for an Idempotency-Key reused with another body. Nothing is written
    on a rejected call.
    """
    if not interaction.is_active:
        raise Conflict("The interaction is not active: activate it first.", code="interaction_inactive")
    version = interaction.current_version
    compiled = compiled_version(version.id, version.tasks)
    problems = check_input(compiled.definition.blanks, data)
    if problems:
        raise ApiError("Invalid input. " + "; ".join(f"{k}: {v[0]}" for k, v in problems.items()),
                       code="validation_error", details=problems)
    digest = request_hash(data) if idempotency_key else ""
    if idempotency_key:
        existing = _existing_for_key(user, interaction, idempotency_key, digest)
        if existing is not None:
            return existing, False
        # A key older than the window may be reused: forget the old session's claim on it.
        Session.objects.filter(user=user, interaction=interaction, idempotency_key=idempotency_key).update(
            idempotency_key=None
        )
    try:
        with transaction.atomic():
            session = Session.objects.create(
                user=user, interaction=interaction, version=version, input=data,
                idempotency_key=idempotency_key, request_hash=digest,
                deadline_at=_deadline(interaction),
                size_bytes=len(json.dumps(data, separators=(",", ":"))),
            )
            TaskRun.objects.bulk_create(
                [TaskRun(session=session, name=name) for name in compiled.definition.tasks]
            )
            transaction.on_commit(lambda: session_dispatch(session=session, compiled=compiled))
            transaction.on_commit(metrics.session_started)
    except IntegrityError:
        # Two requests with the same key raced: the other one won; answer with its session.
        existing = _existing_for_key(user, interaction, idempotency_key, digest) if idempotency_key else None
        if existing is None:
            raise
        return existing, False
    return session, True


def session_end(*, session: Session, status: str, error: str, now: datetime) -> None:
    """End an active session as `status`; its unfinished tasks become `cancelled`."""
    if Session.objects.filter(pk=session.pk, status__in=ACTIVE).update(
        status=status, error=error, finished_at=now, updated_at=now
    ):
        transaction.on_commit(lambda: metrics.session_finished(status))
        transaction.on_commit(lambda: announce_end(session_id=session.pk, status=status))
    running = list(session.task_runs.filter(status=TaskRun.Status.RUNNING).values_list("name", flat=True))
    session.task_runs.filter(status__in=(TaskRun.Status.PENDING, TaskRun.Status.RUNNING)).update(
        status=TaskRun.Status.CANCELLED, error=error, finished_at=now, updated_at=now, lease_expires_at=None
    )
    revoke_running(session_id=session.pk, names=running)


def session_cancel(*, session: Session) -> Session:
    """Cancel a session: pending tasks never start, running ones are asked to stop.

    Raises Conflict (409) if the session has already finished.
    """
    with transaction.atomic():
        locked = Session.objects.select_for_update().filter(pk=session.pk, status__in=ACTIVE).first()
        if locked is None:
            raise Conflict("The session has already finished.", code="session_finished")
        session_end(session=locked, status=Session.Status.CANCELLED, error="cancelled by the user",
                    now=timezone.now())
    session.refresh_from_db()
    return session


def session_retry(*, session: Session) -> Session:
    """Start a new session of the same version and input that reuses completed outputs.

    Only the tasks that did not complete are sent to the workers.
    """
    version = session.version
    compiled = compiled_version(version.id, version.tasks)
    done = {run.name: run for run in session.task_runs.filter(status=TaskRun.Status.COMPLETED)}
    with transaction.atomic():
        retry = Session.objects.create(
            user=session.user, interaction=session.interaction, version=version,
            input=session.input, retry_of=session, deadline_at=_deadline(session.interaction),
            size_bytes=session.size_bytes,
        )
        TaskRun.objects.bulk_create([
            TaskRun(
                session=retry, name=name,
                **({"status": TaskRun.Status.COMPLETED, "output": done[name].output,
                    "attempts": done[name].attempts, "started_at": done[name].started_at,
                    "finished_at": done[name].finished_at} if name in done else {}),
            )
            for name in compiled.definition.tasks
        ])
        plan = remaining_plan(compiled=compiled, unfinished=set(compiled.definition.tasks) - set(done))
        transaction.on_commit(lambda: dispatch_plan(session_id=str(retry.id), compiled=compiled, plan=plan))
        transaction.on_commit(metrics.session_started)
    return retry
