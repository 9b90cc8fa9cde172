"""The Server-Sent Events stream of a session (`GET /api/sessions/{id}/events/`).

Events: `task` (a task's record, with its `name`) each time a task's status moves on, then one
`session` (the full session, as `GET /api/sessions/{id}/` shows it), then the stream ends.

Ids. A task's progress is a number that grows with every change of its record:
`2 × attempts + (1 pending, 0 running, 2 ended)`, 0 meaning "not seen yet" (pending → running
→ pending for a retry → running → completed gives 1, 2, 3, 4, 6). An event's id is the sum of
the progress the client has now seen (a sequence that only grows), then that progress per task
in name order: `7-2.4.1`; the `session` event's id ends in `-end`. Everything in it comes from
what the database holds, so any server process can resume any stream: with `Last-Event-ID`
(or `?last_event_id=`), the stream sends only the tasks whose record moved past what the
client saw, then follows. A client that saw the `session` event gets 204, which tells an
EventSource to stop reconnecting.

Sources, in order: the database once the subscription to the session's channel is in effect
(so nothing falls between the two), then pushed events (`interactions.events`). Pub/sub may
lose a message, so on the session's end the stream diffs the final representation against what
it sent and sends the rest; it also re-reads the database every JUNCTION_SSE_RESYNC_SECONDS,
and every JUNCTION_SSE_POLL_SECONDS until a task event has been pushed to it (workers that
publish only the end). A keep-alive comment goes out every JUNCTION_SSE_KEEPALIVE_SECONDS.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS
from django.core.serializers.json import DjangoJSONEncoder

from interactions import events
from interactions.models import TaskRun
from interactions.statuses import SESSION_TERMINAL

logger = logging.getLogger(__name__)

_PHASE = {TaskRun.Status.PENDING: 1, TaskRun.Status.RUNNING: 0}
_TERMINAL = SESSION_TERMINAL


def progress(task: dict[str, Any]) -> int:
    """How far a task's record has moved on (see the module's docstring); 1 for a new task."""
    return 2 * (task.get("attempts") or 0) + _PHASE.get(task["status"], 2)


@dataclass(frozen=True)
class Seen:
    """What a client said it saw (`Last-Event-ID`): progress per task in name order, and the end."""

    progress: tuple[int, ...]
    ended: bool

    @classmethod
    def parse(cls, raw: str | None) -> Seen | None:
        """Read an event id; None when it is missing or not one of ours (then replay everything)."""
        if not raw:
            return None
        parts = raw.strip().split("-")
        try:
            if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] != "end"):
                return None
            values = tuple(int(value) for value in parts[1].split(".")) if parts[1] else ()
        except ValueError:
            return None
        if any(value < 0 for value in values):
            return None
        return cls(values, len(parts) == 3)


def sse(event: str, data: dict[str, Any], event_id: str) -> str:
    return f"id: {event_id}\nevent: {event}\ndata: {json.dumps(data, cls=DjangoJSONEncoder)}\n\n"


KEEP_ALIVE = ": keep-alive\n\n"


class _Position:
    def __init__(self, names: list[str], seen: Seen | None):
        self.names = names
        values = seen.progress if seen is not None and len(seen.progress) == len(names) else (0,) * len(names)
        self.progress = dict(zip(names, values))

    def advance(self, name: str, task: dict[str, Any]) -> str | None:
        """Record the task's record; return its event if it moved past what was sent."""
        if name not in self.progress:  # a task this stream does not know: ignore
            return None
        value = progress(task)
        if value <= self.progress[name]:
            return None
        self.progress[name] = value
        return sse("task", {"name": name, **task}, self.event_id())

    def changes(self, tasks: dict[str, dict[str, Any]]) -> list[str]:
        """The events of every task in `tasks` that moved on, oldest change first."""
        order = sorted(tasks, key=lambda name: (tasks[name].get("finished_at") or tasks[name].get("started_at") or "", name))
        return [event for event in (self.advance(name, tasks[name]) for name in order) if event]

    def event_id(self, end: bool = False) -> str:
        vector = ".".join(str(self.progress[name]) for name in self.names)
        return f"{sum(self.progress.values())}-{vector}" + ("-end" if end else "")


@asynccontextmanager
async def _subscription(session_id: Any) -> AsyncIterator[events.Subscription | None]:
    """Subscribe, or give None when the event bus is down (the stream then polls)."""
    async with AsyncExitStack() as stack:
        try:
            subscription = await stack.enter_async_context(events.subscribe(session_id))
        except Exception as exc:
            if not events.bus_down(exc):
                raise
            logger.warning("session %s events: no pub/sub (%s), polling the database", session_id, exc)
            subscription = None
        yield subscription


async def session_stream(
    *, session_id: Any, read: Callable[[], Awaitable[dict[str, Any]]], seen: Seen | None,
) -> AsyncGenerator[str, None]:
    """Yield the SSE text of a session's events until its end or JUNCTION_SSE_MAX_SECONDS.

    `read` returns the session's representation from the database.
    """
    deadline = time.monotonic() + settings.JUNCTION_SSE_MAX_SECONDS
    async with _subscription(session_id) as subscription:
        data = await read()
        position = _Position(sorted(data["tasks"]), seen)
        for text in position.changes(data["tasks"]):
            yield text
        if data["status"] in _TERMINAL:
            yield sse("session", data, position.event_id(end=True))
            return
        pushed = False
        now = time.monotonic()
        next_keepalive = now + settings.JUNCTION_SSE_KEEPALIVE_SECONDS
        next_read = now + settings.JUNCTION_SSE_POLL_SECONDS
        while True:
            timeout = min(next_keepalive, next_read, deadline) - time.monotonic()
            event: events.Event | None
            if subscription is None:
                await asyncio.sleep(max(timeout, 0))
                event = None
            else:
                event = await subscription.next(timeout)
            if event is not None and event.kind == events.TASK and event.name and event.data:
                pushed = True
                change = position.advance(event.name, event.data)
                if change:
                    yield change
                continue
            if event is not None and event.kind == events.SESSION and event.data:
                for change in position.changes(event.data["tasks"]):
                    yield change
                yield sse("session", event.data, position.event_id(end=True))
                return
            now = time.monotonic()
            if now >= deadline:
                data = await read()
                for change in position.changes(data["tasks"]):
                    yield change
                yield sse("session", data, position.event_id(end=data["status"] in _TERMINAL))
                return
            if event is not None or now >= next_read:  # a RESYNC, or time to look again
                data = await read()
                for change in position.changes(data["tasks"]):
                    yield change
                if data["status"] in _TERMINAL:
                    yield sse("session", data, position.event_id(end=True))
                    return
                interval = settings.JUNCTION_SSE_RESYNC_SECONDS if pushed else settings.JUNCTION_SSE_POLL_SECONDS
                next_read = now + interval
            if now >= next_keepalive:
                yield KEEP_ALIVE
                next_keepalive = now + settings.JUNCTION_SSE_KEEPALIVE_SECONDS


def blocking(*, session_id: Any, read: Callable[[], dict[str, Any]], seen: Seen | None) -> Iterator[str]:
    """`session_stream` for a thread (a WSGI server, the test client): on a loop of its own.

    `read` is synchronous; it runs on a thread of this stream's (an event loop's thread must
    not touch the database) but with the calling thread's database connection, lent for the
    stream (the caller is blocked meanwhile): no second connection per stream, and the reads see
    what the caller's transaction sees.
    """
    from django.db import connections

    lent = connections[DEFAULT_DB_ALIAS]
    lent.inc_thread_sharing()

    def borrow() -> None:
        connections[DEFAULT_DB_ALIAS] = lent

    reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="junction-sse", initializer=borrow)
    loop = asyncio.new_event_loop()

    async def read_async() -> dict[str, Any]:
        return await loop.run_in_executor(reader, read)

    stream = session_stream(session_id=session_id, read=read_async, seen=seen)
    try:
        while True:
            try:
                yield loop.run_until_complete(stream.__anext__())
            except StopAsyncIteration:
                return
    finally:
        loop.run_until_complete(stream.aclose())
        loop.close()
        reader.shutdown()
        lent.dec_thread_sharing()
