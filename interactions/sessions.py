"""Writes for sessions: start a run, cancel it, retry it, end it. (Reads are in `selectors.py`.)

A new session is decided as far as it can be in the process that takes the call: the fused
(pure) tasks that depend on no worker's task run right here, before anything is written, so a
session of pure tasks is stored already finished by the transaction that creates it and needs
no worker at all. What needs a worker is sent only once the creating transaction commits
(`transaction.on_commit`), so a rolled-back request enqueues nothing and no worker ever looks
for a row that is not there yet.
"""
from __future__ import annotations

import hashlib
import json
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.http import Http404
from django.utils import timezone

from accounts.models import User
from config import metrics, oplog
from config.errors import Conflict, InvalidInput, Unprocessable
from interactions import executor, holding, quotas, runstore
from interactions.compiled import CompiledVersion, compiled_version
from interactions.dispatch import dispatch_plan, revoke_running, worker_plan
from interactions.engine.execution import Record, session_outcome, settle
from interactions.engine.inputs import check_input
from interactions.models import Interaction, InteractionVersion, Session, TaskRun
from interactions.statuses import COMPLETED, FAILED, SESSION_ACTIVE, SKIPPED
from tasks_catalog.base import TaskFailed
from tasks_catalog.registry import task_types
from tasks_catalog.expressions import shared_budget

logger = logging.getLogger(__name__)
IDEMPOTENCY_WINDOW = timedelta(hours=24)
IDEMPOTENCY_KEY_MAX: int = Session._meta.get_field("idempotency_key").max_length or 255


def announce_end(*, session_id, status: str, data: dict[str, Any] | None = None) -> None:
    """Tell callers waiting with `Prefer: wait` and `/events` streams that the session ended.

    Publishes the session's representation (`events.publish_session_end`): `data` when the
    caller has it, else read from the database. Best effort: a waiter that misses it reads the
    database when its wait ends.
    """
    from interactions.events import publish_session_end

    publish_session_end(session_id, data)


def request_hash(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _existing_for_key(user: User, interaction: Interaction, key: str, digest: str, end_user=None) -> Session | None:
    found = (
        Session.objects.filter(
            user=user, interaction=interaction, idempotency_key=key, end_user=end_user,
            created_at__gte=timezone.now() - IDEMPOTENCY_WINDOW,
        ).first()
    )
    if found is not None and found.request_hash != digest:
        raise Unprocessable(
            "This Idempotency-Key was used with a different request body.",
            code="idempotency_conflict",
            details={"Idempotency-Key": ["Already used with a different body."]},
        )
    return found


def _deadline(interaction: Interaction):
    # Clamped: a row written before the API bounded deadline_seconds must not overflow a date.
    seconds = min(interaction.deadline_seconds or settings.JUNCTION_SESSION_DEADLINE,
                  settings.JUNCTION_MAX_SESSION_DEADLINE)
    return timezone.now() + timedelta(seconds=seconds)


def session_start(
    *, user: User, interaction: Interaction, data: Any, idempotency_key: str | None = None, end_user=None,
    expected: runstore.Expected | None = None, hold_until: float | None = None,
) -> tuple[Session, bool]:
    """Start a session of the interaction's current version; return it and whether it is new.

    `user` is the interaction's owner, whose quota the session counts against; `end_user` the
    end user who called, if one did (their integrations serve the tasks that name none, and an
    Idempotency-Key is theirs alone).

    Raises Conflict if the interaction is inactive, InvalidInput naming `<task>.<field>`
    for a bad input, Unprocessable for an Idempotency-Key reused with another body,
    TooManyActiveSessions past the user's active sessions, runstore.StaleRead when `expected`
    (what the caller took from caches) no longer holds. Nothing is written on a rejected call.
    `hold_until` (epoch seconds): the caller waits on this process's event loop until then, so
    the call may hold the session's timers instead of sending them (interactions/holding.py; the
    new session then carries them as `held_timers`).
    """
    if not interaction.is_active:
        raise Conflict("The interaction is not active: activate it first.", code="interaction_inactive")
    version = interaction.current_version
    if version is None:  # every interaction is created with its version 1
        raise Conflict("The interaction has no version to run.", code="interaction_inactive")
    compiled = compiled_version(version.id)  # cached per process: the definition's JSON is not read
    problems = check_input(compiled.definition.blanks, data, tasks=compiled.definition.tasks)
    if problems:
        raise InvalidInput(details=problems)
    if idempotency_key and len(idempotency_key) > IDEMPOTENCY_KEY_MAX:
        raise InvalidInput(f"The Idempotency-Key header is longer than {IDEMPOTENCY_KEY_MAX} characters.",
                           details={"Idempotency-Key": [f"At most {IDEMPOTENCY_KEY_MAX} characters."]})
    digest = request_hash(data) if idempotency_key else ""
    if idempotency_key:
        existing = _existing_for_key(user, interaction, idempotency_key, digest, end_user)
        if existing is not None:
            return existing, False
        # A key older than the window may be reused: forget the old session's claim on it.
        Session.objects.filter(user=user, interaction=interaction, idempotency_key=idempotency_key,
                               end_user=end_user).update(idempotency_key=None)
    try:
        session = _create(user=user, interaction=interaction, version=version, compiled=compiled, data=data,
                          idempotency_key=idempotency_key, request_hash=digest, end_user=end_user,
                          expected=expected, hold_until=hold_until)
    except IntegrityError:
        if not Interaction.objects.filter(pk=interaction.pk).exists():
            # Deleted since this process looked it up (the run path caches interactions).
            raise Http404("The interaction was deleted.") from None
        # Two requests with the same key raced: the other one won; answer with its session.
        existing = _existing_for_key(user, interaction, idempotency_key, digest, end_user) if idempotency_key else None
        if existing is None:
            raise
        return existing, False
    return session, True


@dataclass(frozen=True)
class _Settled:
    """A task decided in the calling process."""

    status: str
    output: Any
    error: str | None
    size: int
    attempts: int
    started_at: datetime | None
    finished_at: datetime


def _settle_at_call(
    *, compiled: CompiledVersion, data: Any, user_id, done: dict[str, Record], room: int, session_id=None,
) -> dict[str, _Settled]:
    """Run every fused task that depends on no unfinished worker task; skip what cannot run.

    `room` is what the session may still grow by (JUNCTION_MAX_SESSION_BYTES): an output past
    it fails its task, as when a worker records it.
    """
    settled: dict[str, _Settled] = {}

    def run(name: str, known) -> Record:
        nonlocal room
        started = timezone.now()
        status_, output, encoded, error = executor.run_pure(
            compiled, name, caller_input=data, records=dict(known), user_id=user_id)
        size = len(encoded or "")
        if size > room:
            status_, output, error, size = FAILED, None, runstore.session_too_large(), 0
        room -= size
        if status_ == FAILED:
            oplog.task_failed(session_id, name, compiled.definition.tasks[name].type, error, 1)
        settled[name] = _Settled(status_, output, error, size, 1, started, timezone.now())
        return Record(status_, output, error)

    # One call runs at most the expression work of one task, however many tasks it runs.
    timeout = settings.JUNCTION_DEFAULT_TASK_TIMEOUT
    with shared_budget(settings.JUNCTION_MAX_EXPRESSION_STEPS, timeout=timeout):
        new = settle(compiled.definition, order=compiled.order, inline=compiled.fused, records=done, run=run)
    now = timezone.now()
    for name, record in new.items():
        if record.status == SKIPPED:
            settled[name] = _Settled(SKIPPED, None, None, 0, 0, None, now)
    return settled


def _timers_at_call(
    *, compiled: CompiledVersion, data: Any, unfinished: set[str], done: dict[str, TaskRun],
    settled: dict[str, _Settled],
) -> dict[str, tuple[float, str | None]]:
    """The timers (delays) that can start with the call: their predecessors have all ended.

    The call claims them itself and sends each message with a countdown, so a delay costs one
    delivery instead of two (claim, then come back when due), and that delivery only records it
    (executor `_timer_due`). Returns {task: (seconds to wait, the error it ends with or None)}:
    a wait longer than the task's timeout ends it as failed at the timeout. A timer whose body
    cannot be resolved or checked here is left to its worker, which fails it.
    """
    records = {name: Record(COMPLETED, run.output) for name, run in done.items()}
    records.update({name: Record(task.status, task.output, task.error) for name, task in settled.items()})
    timers: dict[str, tuple[float, str | None]] = {}
    for name in unfinished:
        spec = compiled.definition.tasks[name]
        task_type = task_types.get(spec.type)
        if not task_type.timer or any(pred not in records for pred in spec.execute_after):
            continue  # (edges not satisfied would have been skipped by settle())
        try:
            body = executor.resolve_task_body(compiled, name, data, records)
            problems = task_type.check_body(body)
        except TaskFailed:
            continue
        if not problems:
            wanted, timeout = task_type.wait_seconds(body), executor.task_timeout(compiled, name)
            timers[name] = (min(wanted, timeout), f"timed out after {timeout:g} s" if wanted > timeout else None)
    return timers


def _create(
    *, user: User, interaction: Interaction, version: InteractionVersion, compiled: CompiledVersion, data: Any,
    done: dict[str, TaskRun] | None = None, retry_of: Session | None = None, idempotency_key: str | None = None,
    request_hash: str = "", end_user=None, expected: runstore.Expected | None = None,
    hold_until: float | None = None,
) -> Session:
    """Create a session, decided as far as the calling process can; send the rest on commit.

    `done` are completed task records reused from an earlier session (a retry).
    """
    done = done or {}
    size = len(json.dumps(data, separators=(",", ":"))) + sum(
        len(json.dumps(run.output, separators=(",", ":"))) for run in done.values())
    session_id = uuid.uuid4()
    settled = _settle_at_call(
        compiled=compiled, data=data, user_id=user.id, room=settings.JUNCTION_MAX_SESSION_BYTES - size,
        session_id=session_id,
        done={name: Record(COMPLETED, run.output) for name, run in done.items()},
    )
    size += sum(task.size for task in settled.values())
    unfinished = set(compiled.definition.tasks) - set(done) - set(settled)
    fields: dict[str, Any] = {}
    now = timezone.now()
    timers = _timers_at_call(compiled=compiled, data=data, unfinished=unfinished, done=done, settled=settled)
    starts = [task.started_at for task in settled.values() if task.started_at] + ([now] if timers else [])
    if starts:  # the session started here, with its first task
        fields = {"status": Session.Status.RUNNING, "started_at": min(starts)}
    if not unfinished:  # nothing needs a worker: the session ends here
        records = {name: Record(COMPLETED, run.output) for name, run in done.items()}
        records.update({name: Record(task.status, task.output, task.error) for name, task in settled.items()})
        outcome = session_outcome(compiled.definition, records)
        fields = {
            "status": outcome.status, "result": outcome.result, "started_at": min(starts, default=now),
            "finished_at": now,
            "error": "unhandled failure in " + ", ".join(
                f"{name}: {records[name].error}" for name in outcome.unhandled) if outcome.unhandled else None,
        }
    session = Session(
        id=session_id, user=user, end_user=end_user, interaction=interaction, version=version, input=data,
        retry_of=retry_of,
        idempotency_key=idempotency_key, request_hash=request_hash,
        deadline_at=_deadline(interaction), size_bytes=size, **fields,
    )
    runs = []
    for name in compiled.definition.tasks:
        if name in done:
            old = done[name]
            runs.append(TaskRun(session=session, name=name, status=COMPLETED, output=old.output,
                                attempts=old.attempts, started_at=old.started_at, finished_at=old.finished_at,
                                worker=old.worker))
        elif name in settled:  # ran here: the process that took the call is its worker
            task = settled[name]
            runs.append(TaskRun(session=session, name=name, status=task.status, output=task.output,
                                error=task.error, attempts=task.attempts, started_at=task.started_at,
                                finished_at=task.finished_at,
                                worker=executor.call_worker() if task.status != SKIPPED else ""))
        elif name in timers:  # claimed here: its message comes when it is due
            runs.append(TaskRun(session=session, name=name, status=TaskRun.Status.RUNNING, attempts=1,
                                started_at=now, worker=executor.call_worker(), lease_expires_at=now + timedelta(
                                    seconds=executor.lease_seconds(executor.task_timeout(compiled, name)))))
        else:
            runs.append(TaskRun(session=session, name=name))
    try:  # one round trip with the active-session limit, a synchronous commit
        runstore.insert_session(session, runs, active_limit=quotas.active_limit(), expected=expected)
    except runstore.TooManyActive:
        raise quotas.too_many_active_sessions() from None
    # What the API renders needs no further query.
    session._prefetched_objects_cache = {"task_runs": runs}  # type: ignore[attr-defined]  # Django's prefetch cache
    # Run now, or when the caller's transaction commits (never if it rolls back).
    def started() -> None:
        metrics.session_started()
        oplog.session_started(session.id, interaction.id, user.id, version=version.number)

    transaction.on_commit(started)
    due = {name: (now.timestamp() + seconds, error) for name, (seconds, error) in timers.items()}
    if unfinished and holding.holdable(compiled=compiled, unfinished=unfinished, timers=due, hold_until=hold_until):
        # The waiting caller's process records the timers when due: nothing to send.
        session.held_timers = holding.Held(  # type: ignore[attr-defined]  # read by the run view
            session_id=str(session.id), version_id=str(version.id), user_id=str(user.id), compiled=compiled,
            timers=due, unfinished=frozenset(unfinished))
    elif unfinished:
        plan = worker_plan(compiled=compiled, unfinished=unfinished)
        transaction.on_commit(lambda: dispatch_plan(
            session_id=str(session.id), version_id=str(version.id), compiled=compiled, plan=plan,
            timers=due, user_id=str(user.id)))
    else:
        transaction.on_commit(lambda: executor.count_end(
            session_id=session.id, interaction_id=interaction.id, created_at=session.created_at,
            status=session.status, error=session.error))
    return session


def session_end(*, session: Session, status: str, error: str, now: datetime) -> None:
    """End an active session as `status`; its unfinished tasks become `cancelled`."""
    if Session.objects.filter(pk=session.pk, status__in=SESSION_ACTIVE).update(
        status=status, error=error, finished_at=now, updated_at=now
    ):
        transaction.on_commit(lambda: executor.count_end(session_id=session.pk, interaction_id=session.interaction_id,
                                                 created_at=session.created_at, status=status, error=error))
        transaction.on_commit(lambda: announce_end(session_id=session.pk, status=status))
    running = list(session.task_runs.filter(status=TaskRun.Status.RUNNING).values_list("name", flat=True))
    session.task_runs.filter(status__in=(TaskRun.Status.PENDING, TaskRun.Status.RUNNING)).update(
        status=TaskRun.Status.CANCELLED, error=error, finished_at=now, updated_at=now, lease_expires_at=None
    )
    revoke_running(session_id=session.pk, names=running,
                   compiled=compiled_version(session.version_id) if running else None)


def session_cancel(*, session: Session) -> Session:
    """Cancel a session: pending tasks never start, running ones are asked to stop.

    Raises Conflict if the session has already finished.
    """
    with transaction.atomic():
        locked = Session.objects.select_for_update().filter(pk=session.pk, status__in=SESSION_ACTIVE).first()
        if locked is None:
            raise Conflict("The session has already finished.", code="session_finished")
        session_end(session=locked, status=Session.Status.CANCELLED, error="cancelled by the user",
                    now=timezone.now())
    session.refresh_from_db()
    return session


def session_retry(*, session: Session) -> Session:
    """Start a new session of the same version and input that reuses completed outputs.

    Only the tasks that did not complete run again (the fused ones that can, right here).
    Raises Conflict if the interaction is not active, as a new run would.
    """
    if not session.interaction.is_active:
        raise Conflict("The interaction is not active: activate it first.", code="interaction_inactive")
    version = session.version
    compiled = compiled_version(version.id, version.tasks)
    done = {run.name: run for run in session.task_runs.filter(status=TaskRun.Status.COMPLETED)}
    # The same call again: an end user's session is retried as theirs (their integrations).
    return _create(user=session.user, interaction=session.interaction, version=version, compiled=compiled,
                   data=session.input, done=done, retry_of=session, end_user=session.end_user)
