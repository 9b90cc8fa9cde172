"""Writes for sessions: start a run, cancel it, retry it. (Reads are in `selectors.py`.)

Work is enqueued only once the transaction that created the session commits
(`transaction.on_commit`), so a rolled-back request enqueues nothing and no worker ever
looks for a row that is not there yet.
"""
from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework import status

from accounts.models import User
from config.errors import ApiError, Conflict
from interactions.compiled import CompiledVersion, compiled_version
from interactions.engine.canvas import to_canvas
from interactions.engine.inputs import check_input
from interactions.models import Interaction, Session, TaskRun
from tasks_catalog.registry import find_task_type

IDEMPOTENCY_WINDOW = timedelta(hours=24)


def _signature_for(session_id: str, compiled: CompiledVersion):
    from interactions.tasks import run_task

    def make(name: str):
        spec = compiled.definition.tasks[name]
        timeout = spec.timeout or settings.JUNCTION_DEFAULT_TASK_TIMEOUT
        return run_task.si(session_id, name).set(
            queue=find_task_type(spec.type).queue,
            # Prefork workers enforce these; task types also honour the timeout themselves.
            soft_time_limit=timeout,
            time_limit=timeout + 5,
        )

    return make


def session_dispatch(*, session: Session, compiled: CompiledVersion) -> None:
    """Send the session's canvas to the broker (call after the creating transaction commits).

    The final `finish_session` task gets the session's id as its task id, so that a waiting
    caller can block on that one result.
    """
    from interactions.tasks import finish_session

    session_id = str(session.id)
    finish = finish_session.si(session_id).set(task_id=session_id, queue="default")
    canvas = to_canvas(compiled.plan, _signature_for(session_id, compiled), finish=finish)
    canvas.apply_async()


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
            )
            TaskRun.objects.bulk_create(
                [TaskRun(session=session, name=name) for name in compiled.definition.tasks]
            )
            transaction.on_commit(lambda: session_dispatch(session=session, compiled=compiled))
    except IntegrityError:
        # Two requests with the same key raced: the other one won; answer with its session.
        existing = _existing_for_key(user, interaction, idempotency_key, digest) if idempotency_key else None
        if existing is None:
            raise
        return existing, False
    return session, True


def session_cancel(*, session: Session) -> Session:
    """Cancel a session: pending tasks never start, running ones are asked to stop.

    Raises Conflict (409) if the session has already finished.
    """
    now = timezone.now()
    with transaction.atomic():
        updated = Session.objects.filter(
            pk=session.pk, status__in=[Session.Status.QUEUED, Session.Status.RUNNING]
        ).update(status=Session.Status.CANCELLED, finished_at=now, updated_at=now,
                 error="cancelled by the user")
        if not updated:
            raise Conflict("The session has already finished.", code="session_finished")
        TaskRun.objects.filter(
            session=session, status__in=[TaskRun.Status.PENDING, TaskRun.Status.RUNNING]
        ).update(status=TaskRun.Status.CANCELLED, finished_at=now, updated_at=now)
    session.refresh_from_db()
    return session


def session_retry(*, session: Session) -> Session:
    """Start a new session of the same version and input that reuses completed outputs."""
    version = session.version
    compiled = compiled_version(version.id, version.tasks)
    done = {run.name: run for run in session.task_runs.filter(status=TaskRun.Status.COMPLETED)}
    with transaction.atomic():
        retry = Session.objects.create(
            user=session.user, interaction=session.interaction, version=version,
            input=session.input, retry_of=session,
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
        transaction.on_commit(lambda: session_dispatch(session=retry, compiled=compiled))
    return retry
