"""Everything that talks to Celery: send a session's steps, revoke running ones.

Only tasks that need a worker are sent (`CompiledVersion.worker_plan`): fused tasks run inside
the steps that make them ready (`interactions/executor.py`).
"""
from __future__ import annotations

import logging
import time

from django.conf import settings

from config.queues import Queue

from interactions.compiled import CompiledVersion
from interactions.engine.canvas import Plan, chord_headers, compile_plan, restrict, to_canvas
from tasks_catalog.registry import task_types

logger = logging.getLogger(__name__)


def task_message_id(session_id: str, name: str) -> str:
    """The Celery task id of a session's task: stable, so it can be revoked by name."""
    return f"{session_id}.{name}"


def _signature_for(session_id: str, compiled: CompiledVersion, version_id: str,
                   timers: dict[str, tuple[float, str | None]], user_id: str | None, headers: frozenset[str]):
    from interactions.tasks import run_task

    def make(name: str):
        spec = compiled.definition.tasks[name]
        timeout = spec.timeout or settings.JUNCTION_DEFAULT_TASK_TIMEOUT
        timer = timers.get(name)
        extra = {"due": timer[0], "timer_error": timer[1]} if timer else {}
        signature = run_task.si(session_id, name, version_id, user_id=user_id, **extra).set(
            task_id=task_message_id(session_id, name),
            queue=str(task_types.get(spec.type).queue),
            # Prefork workers enforce these; task types also honour the timeout themselves.
            soft_time_limit=timeout,
            time_limit=timeout + settings.JUNCTION_HARD_TIMEOUT_GRACE,
            # Junction reads every outcome from PostgreSQL: Celery stores a step's result only
            # for a chord that waits on it (engine/canvas.py `chord_headers`).
            ignore_result=name not in headers,
        )
        if timer:  # a timer claimed by the call: delivered once, when due
            signature = signature.set(countdown=max(0.0, timer[0] - time.time()))
        return signature

    return make


def worker_plan(*, compiled: CompiledVersion, unfinished: set[str]) -> Plan | None:
    """The plan of the `unfinished` tasks that need a worker (None if none does).

    Tasks that already ended must not be sent again: their delivery would be ignored as a
    duplicate and the successors chained after it would never fire.
    """
    if unfinished == set(compiled.definition.tasks) - compiled.at_call:
        return compiled.worker_plan  # the usual start: compiled once per version
    predecessors = {
        name: {pred for pred in compiled.definition.tasks[name].execute_after if pred in unfinished}
        for name in unfinished
    }
    if not predecessors:
        return None
    return restrict(compile_plan(predecessors), unfinished - compiled.fused)


def dispatch_plan(
    *, session_id: str, version_id: str, compiled: CompiledVersion, plan: Plan | None,
    timers: dict[str, tuple[float, str | None]] | None = None, user_id: str | None = None,
) -> None:
    """Send a plan's canvas to the broker; with no plan, the task that finishes the session.

    `timers` are the timers the caller already claimed: {task: (due, epoch seconds; the error it
    ends with or None)}; each message waits until due (a countdown) and carries both, so that its
    delivery only records the timer (executor `_timer_due`).
    `user_id` (the session's owner) travels with each message, for the slow-task slots.

    If the broker is unreachable the session stays in PostgreSQL and the sweeper sends it once
    the broker is back: the caller's request still succeeds.
    """
    from interactions.tasks import finish_session

    if plan is None:
        canvas = finish_session.si(session_id).set(queue=str(Queue.DEFAULT))
    else:
        canvas = to_canvas(plan, _signature_for(session_id, compiled, version_id, timers or {}, user_id,
                                                chord_headers(plan)))
    try:
        canvas.apply_async()
    except Exception:  # the broker is down: kombu raises its own and redis' errors
        logger.exception("could not enqueue session %s; the sweeper will resume it", session_id)


def revoke_running(*, session_id, names: list[str]) -> None:
    """Ask the workers to stop these tasks of a session (prefork workers terminate them)."""
    if not names:
        return
    from config.celery import app

    try:
        app.control.revoke([task_message_id(str(session_id), name) for name in names], terminate=True)
    except Exception:  # best effort: the tasks' results are discarded anyway
        logger.warning("could not broadcast the revoke of %s", names, exc_info=True)
