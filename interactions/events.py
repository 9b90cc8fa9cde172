"""Session events: publish a task's new record and a session's end; subscribe to them.

Publishers (the executor, cancel, the sweeper) call `publish_task_changes` and
`publish_session_end` after the record they announce has committed. Both are cheap, the first
does not even wait for the network, and neither raises: a lost message must never break a
task, because every reader falls back on the database (the source of truth).

Subscribers are asynchronous (`subscribe`, `wait_for_end`): the run endpoint's
`Prefer: wait` and the `/events` stream await messages on the event loop, holding no thread.

Two channels per session, for two kinds of readers: `/events` streams want every task's record
and the end (`channel_name`: `junction:session:<id>`, which carries both); a `Prefer: wait`
caller wants only the end (`end_channel`: `junction:session-end:<id>`), and is not woken by
the task events of the session it waits on. The end goes to both channels in one MULTI/EXEC.

Two transports, chosen by settings:
- distributed: Redis pub/sub on `JUNCTION_EVENTS_URL` (by default the result backend's Redis).
  Pub/sub is lossy, so the end is also kept under the key `junction:session-end:<id>` for
  `JUNCTION_EVENTS_TTL` seconds, set in the same MULTI/EXEC as the PUBLISHes: a waiter
  subscribes, then reads the key once, and so sees an end published before its subscription
  took effect. Task changes go out through this process's Redis sender thread
  (`interactions.redis_sender`), batched; the end is published at once. Under the ASGI server
  every subscriber of a process shares one pub/sub connection (`_Hub`); elsewhere (a WSGI
  thread, a test client) a subscription opens its own connection and closes it.
- embedded (no Redis: memory broker, in-process worker): the same calls on an in-process bus,
  with worker threads handing messages to the event loops that wait.
"""
from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, AsyncIterator

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder

from interactions import redis_sender

logger = logging.getLogger(__name__)

TASK = "task"
SESSION = "session"
# Not a message: the subscription may have missed messages (a reconnect), look again.
RESYNC = "resync"


@dataclass(frozen=True)
class Event:
    """One message of a session's channel: a task's record, the session's end, or a resync."""

    kind: str
    data: dict[str, Any] | None = None
    name: str | None = None


def channel_name(session_id: Any) -> str:
    return f"junction:session:{session_id}"


def end_channel(session_id: Any) -> str:
    """The channel of the session's end only (what a waiting caller needs)."""
    return f"junction:session-end:{session_id}"


def end_key(session_id: Any) -> str:
    """The key that keeps the end for JUNCTION_EVENTS_TTL (keys and channels are apart in Redis)."""
    return f"junction:session-end:{session_id}"


def _encode(event: Event) -> bytes:
    message: dict[str, Any] = {"event": event.kind, "data": event.data}
    if event.name is not None:
        message["name"] = event.name
    return json.dumps(message, cls=DjangoJSONEncoder, separators=(",", ":")).encode()


def _decode(raw: bytes | str) -> Event | None:
    try:
        message = json.loads(raw)
        return Event(kind=message["event"], data=message.get("data"), name=message.get("name"))
    except (ValueError, KeyError, TypeError):
        logger.warning("ignoring a malformed session event %r", raw[:200])
        return None


# --- publishing (sync, never raises) ---------------------------------------------------------


def publish_task_change(session_id: Any, name: str, data: dict[str, Any]) -> None:
    """Announce a task's new record (the task's dict of the session representation, SPEC §2.6).

    Call after the record committed. Best effort: never raises.
    """
    try:
        _bus().publish(str(session_id), Event(TASK, data, name), keep=False)
    except Exception:  # the event bus is down: readers fall back on the database
        logger.warning("could not publish a change of task %s of session %s", name, session_id, exc_info=True)


def publish_task_changes(session_id: Any, changes: dict[str, dict[str, Any]]) -> None:
    """Announce several tasks' new records. Never raises, and never waits for the network.

    On Redis the messages go through this process's sender thread (`redis_sender`), which
    sends whatever has queued up in one pipelined round trip: a worker step does not pay for
    its events. Task changes are best effort (a stream diffs them against the session's end),
    so a process killed before its thread sent them loses nothing that matters.
    """
    if not changes:
        return
    try:
        events = [Event(TASK, data, name) for name, data in changes.items()]
        bus = _bus()
        if isinstance(bus, _RedisBus):
            channel = channel_name(session_id)

            def build(commands: list[tuple[Any, ...]]) -> None:  # on the sender's thread: the encoding too
                commands.extend(("PUBLISH", channel, _encode(event)) for event in events)

            redis_sender.send(bus.client, build)
        else:
            bus.publish_many(str(session_id), events)
    except Exception:  # the event bus is down: readers fall back on the database
        logger.warning("could not publish changes of tasks %s of session %s", ", ".join(changes), session_id,
                       exc_info=True)


def publish_session_end(session_id: Any, data: dict[str, Any] | None = None) -> None:
    """Announce the session's end with its full representation (`selectors.session_data`).

    Call after the end committed. With `data` None the representation is read from the
    database (one query set); pass it when you have it. Best effort: never raises.
    """
    try:
        if data is None:
            from interactions import selectors

            data = selectors.session_data(selectors.session_by_id(session_id=session_id))
        _bus().publish(str(session_id), Event(SESSION, data), keep=True)
    except Exception:  # the event bus is down: waiters time out into a 202, streams re-read
        logger.warning("could not publish the end of session %s", session_id, exc_info=True)


# --- subscribing (async) ---------------------------------------------------------------------


class Subscription:
    """The events of one session's channel, as they arrive after the subscription took effect."""

    def __init__(self, queue: asyncio.Queue[Event], stored_end):
        self._queue = queue
        self._stored_end = stored_end

    async def next(self, timeout: float | None) -> Event | None:
        """Return the next event, or None after `timeout` seconds."""
        if timeout is not None and timeout <= 0:
            return self._queue.get_nowait() if not self._queue.empty() else None
        try:
            return await asyncio.wait_for(self._queue.get(), timeout)
        except asyncio.TimeoutError:
            return None

    async def stored_end(self) -> dict[str, Any] | None:
        """Return the session's end if it was published within JUNCTION_EVENTS_TTL, else None."""
        try:
            return await self._stored_end()
        except Exception:
            logger.warning("could not read a stored session end", exc_info=True)
            return None


@asynccontextmanager
async def subscribe(session_id: Any, *, end_only: bool = False) -> AsyncIterator[Subscription]:
    """Subscribe to a session's events; the subscription is in effect when this enters.

    Every task change and the end; with `end_only`, the end alone (and RESYNCs). Raises what
    the transport raises if it cannot subscribe (callers fall back on the database).
    """
    async with _bus().subscribe(str(session_id), end_only=end_only) as subscription:
        yield subscription


async def wait_for_end(session_id: Any, timeout: float) -> dict[str, Any] | None:
    """Return the session's end representation once published, or None after `timeout` s.

    None also when the event bus cannot be reached: the caller then reads the database.
    """
    deadline = time.monotonic() + timeout
    try:
        async with subscribe(session_id, end_only=True) as subscription:
            end = await subscription.stored_end()
            while end is None:
                event = await subscription.next(deadline - time.monotonic())
                if event is None:
                    return None
                if event.kind == SESSION:
                    return event.data
                if event.kind == RESYNC:
                    end = await subscription.stored_end()
            return end
    except Exception as exc:
        if not bus_down(exc):
            raise
        logger.warning("could not wait for session %s: %s", session_id, exc)
        return None


def bus_down(exc: BaseException) -> bool:
    """Whether an error means the event bus cannot be reached (so read the database instead)."""
    return isinstance(exc, (OSError, asyncio.TimeoutError)) or type(exc).__module__.startswith("redis")


def serve_on_this_loop() -> None:
    """Mark the running event loop as a server's: its waiters share one pub/sub connection.

    The ASGI application calls this. Loops not marked (one per request under WSGI or a test
    client) give each subscription its own connection, closed when it ends.
    """
    _server_loops.add(asyncio.get_running_loop())


async def close_server_loop() -> None:
    """Close this loop's shared pub/sub connection (the ASGI application's shutdown)."""
    loop = asyncio.get_running_loop()
    _server_loops.discard(loop)
    hub = _hubs.pop(loop, None)
    if hub is not None:
        await hub.close()


# --- transports --------------------------------------------------------------------------------

# Plain containers, not weak ones: uvloop's loops take no weak references. A server has one loop.
_server_loops: set[asyncio.AbstractEventLoop] = set()


class _RedisBus:
    def __init__(self, url: str):
        import redis

        self.url = url
        self.client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)

    def publish(self, session_id: str, event: Event, *, keep: bool) -> None:
        payload = _encode(event)
        if keep:  # the end: kept, and on both channels (waiters listen to the second only)
            # One round trip on this thread's own connection (redis_sender.call): the step
            # that ends a session waits for it.
            replies = redis_sender.call(self.client, [
                ("MULTI",), ("SET", end_key(session_id), payload, "EX", int(settings.JUNCTION_EVENTS_TTL)),
                ("PUBLISH", channel_name(session_id), payload), ("PUBLISH", end_channel(session_id), payload),
                ("EXEC",),
            ])
            refused = next((reply for reply in replies if isinstance(reply, Exception)), None)
            if refused is not None:
                raise refused
        else:
            self.client.publish(channel_name(session_id), payload)

    def publish_many(self, session_id: str, events: list[Event]) -> None:
        pipe = self.client.pipeline(transaction=False)
        for event in events:
            pipe.publish(channel_name(session_id), _encode(event))
        pipe.execute()

    @asynccontextmanager
    async def subscribe(self, session_id: str, *, end_only: bool) -> AsyncIterator[Subscription]:
        channel = end_channel(session_id) if end_only else channel_name(session_id)
        loop = asyncio.get_running_loop()
        if loop in _server_loops:
            hub = _hubs.get(loop)
            if hub is None:
                hub = _hubs[loop] = _Hub(self.url)
            queue = await hub.add(channel)
            try:
                yield Subscription(queue, lambda: hub.get_end(session_id))
            finally:
                hub.remove(channel, queue)
            return
        async with _private_subscription(self.url, session_id, channel) as subscription:
            yield subscription


async def _read_end(client, session_id: str) -> dict[str, Any] | None:
    raw = await client.get(end_key(session_id))
    event = _decode(raw) if raw else None
    return event.data if event is not None and event.kind == SESSION else None


def _event_of(message: dict[str, Any]) -> Event | None:
    return _decode(message["data"]) if message.get("type") == "message" else None


@asynccontextmanager
async def _private_subscription(url: str, session_id: str, channel: str) -> AsyncIterator[Subscription]:
    """One connection for one subscription (loops that are not a server's)."""
    import redis.asyncio as aredis

    client = aredis.Redis.from_url(url, socket_connect_timeout=2)
    pubsub = client.pubsub()
    queue: asyncio.Queue[Event] = asyncio.Queue()
    reader = None
    try:
        await pubsub.subscribe(channel)
        # Wait for the confirmation: from then on no message of the channel is missed.
        while True:
            message = await pubsub.get_message(timeout=5)
            if message is None:
                raise ConnectionError("no confirmation of the subscription")
            if message["type"] == "subscribe":
                break

        async def read() -> None:
            while True:
                event = _event_of(await pubsub.get_message(timeout=None) or {})
                if event is not None:
                    queue.put_nowait(event)

        reader = asyncio.ensure_future(read())
        yield Subscription(queue, lambda: _read_end(client, session_id))
    finally:
        if reader is not None:
            reader.cancel()
            try:
                await reader
            except BaseException:  # cancelled, or the connection failed: closing anyway
                pass
        await pubsub.aclose()
        await client.aclose()


class _Hub:
    """One pub/sub connection shared by every subscriber on a server's event loop.

    A channel is subscribed while it has subscribers. Each SUBSCRIBE's confirmation resolves
    the oldest pending one of its channel; a confirmation nobody waits for is a resubscription
    after a reconnect (redis-py resubscribes by itself), so the channel's subscribers get a
    RESYNC: they may have missed messages and look again.
    """

    def __init__(self, url: str):
        import redis.asyncio as aredis

        self.client = aredis.Redis.from_url(url, socket_connect_timeout=2)
        self.pubsub = self.client.pubsub()
        self.queues: dict[str, set[asyncio.Queue[Event]]] = {}
        self.pending: dict[str, list[asyncio.Future[None]]] = {}
        self.reader: asyncio.Task[None] | None = None
        # One command at a time: concurrent first commands would each open a connection.
        self.sending = asyncio.Lock()

    async def add(self, channel: str) -> asyncio.Queue[Event]:
        queue: asyncio.Queue[Event] = asyncio.Queue()
        subscribers = self.queues.setdefault(channel, set())
        subscribers.add(queue)
        confirmed = asyncio.get_running_loop().create_future()
        self.pending.setdefault(channel, []).append(confirmed)
        try:
            async with self.sending:
                await self.pubsub.subscribe(channel)
                if self.reader is None or self.reader.done():
                    self.reader = asyncio.ensure_future(self._read())
            await asyncio.wait_for(asyncio.shield(confirmed), 5)
        except BaseException:
            self.remove(channel, queue)
            raise
        return queue

    def remove(self, channel: str, queue: asyncio.Queue[Event]) -> None:
        subscribers = self.queues.get(channel)
        if subscribers is None:
            return
        subscribers.discard(queue)
        if not subscribers:
            del self.queues[channel]
            asyncio.ensure_future(self._unsubscribe(channel))

    async def _unsubscribe(self, channel: str) -> None:
        try:
            async with self.sending:
                if channel not in self.queues:
                    await self.pubsub.unsubscribe(channel)
        except Exception:
            logger.warning("could not unsubscribe from %s", channel, exc_info=True)

    async def get_end(self, session_id: str) -> dict[str, Any] | None:
        return await _read_end(self.client, session_id)

    async def _read(self) -> None:
        while True:
            try:
                message = await self.pubsub.get_message(timeout=None)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # redis-py reconnects and resubscribes on the next read
                logger.warning("session events connection lost (%s); reconnecting", exc)
                await asyncio.sleep(0.5)
                continue
            if not message:
                continue
            channel = message["channel"].decode() if isinstance(message["channel"], bytes) else message["channel"]
            if message["type"] == "subscribe":
                waiting = self.pending.get(channel)
                if waiting:
                    future = waiting.pop(0)
                    if not waiting:
                        del self.pending[channel]
                    if not future.done():
                        future.set_result(None)
                else:
                    self._deliver(channel, Event(RESYNC))
            else:
                event = _event_of(message)
                if event is not None:
                    self._deliver(channel, event)

    def _deliver(self, channel: str, event: Event) -> None:
        for queue in self.queues.get(channel, ()):
            queue.put_nowait(event)

    async def close(self) -> None:
        if self.reader is not None:
            self.reader.cancel()
        await self.pubsub.aclose()
        await self.client.aclose()


_hubs: dict[asyncio.AbstractEventLoop, _Hub] = {}


class _LocalBus:
    """The embedded mode's bus: publishers in worker threads, subscribers on event loops."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        # Per session: (loop, queue, end only) of each subscriber.
        self.subscribers: dict[str, set[tuple[asyncio.AbstractEventLoop, asyncio.Queue[Event], bool]]] = {}
        self.ends: dict[str, tuple[float, dict[str, Any] | None]] = {}

    def publish(self, session_id: str, event: Event, *, keep: bool) -> None:
        # Copy through JSON, as Redis would: no subscriber shares the publisher's objects.
        copied = _decode(_encode(event))
        assert copied is not None  # what _encode made decodes
        event = copied
        now = time.monotonic()
        with self.lock:
            if keep:
                self.ends = {k: v for k, v in self.ends.items() if v[0] > now}
                self.ends[session_id] = (now + settings.JUNCTION_EVENTS_TTL, event.data)
            targets = list(self.subscribers.get(session_id, ()))
        for loop, queue, end_only in targets:
            if end_only and not keep:  # a task change: not for those who wait for the end only
                continue
            try:
                loop.call_soon_threadsafe(queue.put_nowait, event)
            except RuntimeError:  # that loop has closed: its subscriber is gone
                pass

    def publish_many(self, session_id: str, events: list[Event]) -> None:
        for event in events:
            self.publish(session_id, event, keep=False)

    @asynccontextmanager
    async def subscribe(self, session_id: str, *, end_only: bool) -> AsyncIterator[Subscription]:
        entry = (asyncio.get_running_loop(), asyncio.Queue[Event](), end_only)
        with self.lock:
            self.subscribers.setdefault(session_id, set()).add(entry)
        try:
            yield Subscription(entry[1], lambda: self._stored_end(session_id))
        finally:
            with self.lock:
                subscribers = self.subscribers.get(session_id, set())
                subscribers.discard(entry)
                if not subscribers:
                    self.subscribers.pop(session_id, None)

    async def _stored_end(self, session_id: str) -> dict[str, Any] | None:
        with self.lock:
            found = self.ends.get(session_id)
        return found[1] if found and found[0] > time.monotonic() else None


_bus_instance: _RedisBus | _LocalBus | None = None
_bus_lock = threading.Lock()


def _bus() -> _RedisBus | _LocalBus:
    global _bus_instance
    if _bus_instance is None:
        with _bus_lock:
            if _bus_instance is None:
                url = settings.JUNCTION_EVENTS_URL
                _bus_instance = _RedisBus(url) if url else _LocalBus()
    return _bus_instance
