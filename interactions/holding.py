"""A waiting call holds its session's timers itself: a session of delays sends no message.

When a caller waits (`Prefer: wait=N`, served on the ASGI server's event loop) on a session
whose every unfinished task is a timer the call claimed (a `delay` whose predecessors had ended)
or a fused (pure) task, and every timer is due at least HOLD_MARGIN seconds before the wait
ends, the process that took the call keeps those timers on its event loop instead of sending
their messages. At each due time it records the timers that are due (`executor.timers_due`: one
round trip, in a worker thread), which runs the fused tasks they make ready and ends the
session; the waiter is woken by that end like by any other. No broker message, no worker
process, no hop between processes — the waiting crowd of issue 8 costs the workers nothing.

What can go wrong, and what happens then:
- the caller goes away: the holder is not tied to the request, it runs on to the end;
- recording fails (the database is unreachable), or the server shuts down (`hand_over`, on the
  ASGI lifespan's shutdown): the timers not yet recorded are sent as Celery messages due when
  they are due — exactly what the call would have sent (`dispatch_plan`) — and a worker
  records them;
- the process dies outright (SIGKILL, OOM, a lost host): nothing was sent; the sweeper finds the
  session stalled once JUNCTION_STALL_SECONDS have passed and the timers' claims ran out, and
  resumes it (the resumed delivery records them). Such a session ends late; it is never lost.

A call whose caller does not wait, waits less, or waits outside an event loop (WSGI, the test
client) sends the timers' messages as before (interactions/sessions.py).
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from asgiref.sync import sync_to_async
from django.db import close_old_connections

from interactions.compiled import CompiledVersion

logger = logging.getLogger(__name__)

# A timer is held only if it is due this many seconds before the caller's wait ends, so that
# the end reaches the waiter in time even when recording takes a moment.
HOLD_MARGIN = 1.0

# The holders running in this process: a task with no reference left may be garbage-collected.
_running: set[asyncio.Task] = set()


@dataclass
class Held:
    """The timers one call holds: {task: (due, epoch seconds; the error it ends with or None)}."""

    session_id: str
    version_id: str
    user_id: str
    compiled: CompiledVersion
    timers: dict[str, tuple[float, str | None]]
    # every task of the session not ended at the call: the timers and the fused tasks after them
    unfinished: frozenset[str] = field(default_factory=frozenset)


def holdable(*, compiled: CompiledVersion, unfinished: set[str], timers: dict[str, tuple[float, str | None]],
             hold_until: float | None) -> bool:
    """Whether the call may hold these timers (see the module's docstring)."""
    if hold_until is None or not timers:
        return False
    if not unfinished - set(timers) <= compiled.fused:
        return False  # a task that needs a worker is still to come
    return all(due <= hold_until - HOLD_MARGIN for due, _ in timers.values())


def start(held: Held) -> None:
    """Hold the timers on the running event loop until each is recorded (or handed to Celery)."""
    task = asyncio.get_running_loop().create_task(_hold(held), name=f"junction-timers-{held.session_id}")
    _running.add(task)
    task.add_done_callback(_running.discard)


async def hand_over() -> None:
    """Send every timer this process still holds to the workers (the server is shutting down).

    The ASGI application calls this on `lifespan.shutdown`: after it the server may exit at
    once (uvicorn re-raises the signal that stopped it), so tasks left on the loop would not
    get to run their cancellation.
    """
    running = list(_running)
    for task in running:
        task.cancel()
    await asyncio.gather(*running, return_exceptions=True)


async def _hold(held: Held) -> None:
    pending = dict(held.timers)
    try:
        while pending:
            due = min(when for when, _ in pending.values())
            await asyncio.sleep(max(0.0, due - time.time()))
            now = time.time()
            ready = {name: error for name, (when, error) in pending.items() if when <= now}
            await sync_to_async(_record, thread_sensitive=False)(held, ready)
            for name in ready:
                del pending[name]
    except asyncio.CancelledError:
        _send(held, pending)  # the loop is shutting down: a worker takes over
        raise
    except Exception:
        logger.exception("could not record the timers of session %s here; sending them to the workers",
                         held.session_id)
        _send(held, pending)


def _record(held: Held, ready: dict[str, str | None]) -> None:
    from interactions import executor

    close_old_connections()  # a thread of the loop's pool: keep Django's connection rules
    try:
        executor.timers_due(session_id=held.session_id, compiled=held.compiled, timers=ready)
    finally:
        close_old_connections()


def _send(held: Held, pending: dict[str, tuple[float, str | None]]) -> None:
    """Send the timers still pending as the call would have: Celery messages due when they are."""
    if not pending:
        return
    from interactions.dispatch import dispatch_plan, worker_plan

    unfinished = set(pending) | (set(held.unfinished) - set(held.timers))
    plan = worker_plan(compiled=held.compiled, unfinished=unfinished)
    dispatch_plan(session_id=held.session_id, version_id=held.version_id, compiled=held.compiled, plan=plan,
                  timers=pending, user_id=held.user_id)
