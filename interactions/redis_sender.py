"""A daemon thread per process that sends the Redis commands nobody waits for, batched.

Task events (`interactions.events`) and the release of a slow-task slot (`interactions.slots`)
need not hold up the step that makes them: `send` queues a function that writes commands and
returns at once. The thread sends whatever has queued up since its last round trip together:
one pipelined round trip per Redis server and database, so a step's events and its slot's
release usually share one, off the step's path. Then it calls each item's `done`.

What is queued is lost if the process dies before the thread sent it, so queue only what is
best effort or bounded otherwise (an event: readers fall back on the database; a slot: its
lease frees it). A process that exits normally sends what is left first: `flush` runs at
interpreter exit, and a Celery pool process calls it when it shuts down (config/celery.py).

Cheap to wake, because it runs for every step: the queue is a `queue.SimpleQueue` (in C: a put
takes no Python-level lock, and wakes the thread only if it is waiting), and the thread keeps
one connection per server of its own (made by the client's pool, so with its settings) and
writes the packed commands on it, without redis-py's per-call pipeline, pool and
instrumentation layers (about half the thread's time with them, measured in
bench/redis_hotpath.py).
"""
from __future__ import annotations

import atexit
import logging
import os
import queue
import threading
from typing import Any, Callable

logger = logging.getLogger(__name__)

Build = Callable[[list[tuple[Any, ...]]], None]  # appends commands: ("PUBLISH", channel, payload)
Done = Callable[[bool], None]  # called with True once the commands were sent and answered


def send(client: Any, build: Build, done: Done | None = None) -> None:
    """Queue `build(commands)` for `client`'s server; never blocks, never raises for the network.

    `build` appends commands (tuples of a command's words) to the list it gets; it runs on the
    sender's thread (encode there what is costly to encode), and an exception in it drops only
    its own commands. `done(ok)` is called on that thread after the round trip; an error reply
    to one command is logged and does not make it False.
    """
    _sender().queue.put((client, build, done))


def flush(timeout: float = 2.0) -> bool:
    """Wait until what this process queued so far has been sent; False after `timeout` s."""
    found = _instance
    if found is None or found[0] != os.getpid():
        return True  # nothing was queued in this process
    sent = threading.Event()
    found[1].queue.put(sent)
    return sent.wait(timeout)


class _Sender:
    def __init__(self) -> None:
        self.queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        threading.Thread(target=self._run, name="junction-redis-sender", daemon=True).start()

    def _run(self) -> None:
        while True:
            batch = [self.queue.get()]
            while True:
                try:
                    batch.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            self._send(batch)

    def _send(self, batch: list[Any]) -> None:
        flushed: list[threading.Event] = []
        servers: dict[tuple[Any, ...], tuple[Any, list[tuple[Build, Done | None]]]] = {}
        for item in batch:
            if isinstance(item, threading.Event):
                flushed.append(item)
                continue
            client, build, done = item
            servers.setdefault(_server(client), (client, []))[1].append((build, done))
        for server, (client, items) in servers.items():
            commands: list[tuple[Any, ...]] = []
            for build, _ in items:
                try:
                    build(commands)
                except Exception:
                    logger.exception("could not build a Redis command")
            ok = self._round_trip(server, client, commands)
            for _, done in items:
                if done is not None:
                    try:
                        done(ok)
                    except Exception:
                        logger.exception("a Redis send callback failed")
        for event in flushed:
            event.set()

    def _round_trip(self, server: tuple[Any, ...], client: Any, commands: list[tuple[Any, ...]]) -> bool:
        """Send `commands` in one write and read their replies (`call`, on this thread's own
        connection); False if the server is unreachable."""
        if not commands:
            return True
        try:
            replies = call(client, commands)
        except Exception:  # unreachable, or a timeout: every user of this thread is best effort
            logger.warning("could not send %d queued Redis commands", len(commands), exc_info=True)
            return False
        for command, reply in zip(commands, replies):
            if isinstance(reply, Exception):
                logger.warning("Redis refused %s: %s", command[0], reply)
        return True


_calls = threading.local()  # each thread's own connections for `call`, per server


def call(client: Any, commands: list[tuple[Any, ...]]) -> list[Any]:
    """Send `commands` in one write and return their replies: for the few commands a step waits
    for (taking a slot, publishing a session's end), the sender's lean way, on a connection of
    the calling thread's own per server, without redis-py's per-call pool, retry and reply
    layers.

    A reply the server refused comes back as the `ResponseError` in its place. Replies are as
    the protocol gives them (bytes, ints), not redis-py's parsed forms. Raises redis'
    `ConnectionError`/`TimeoutError` when the server cannot be reached; the connection is
    dropped and the next call connects again.
    """
    from redis.exceptions import ResponseError

    connections = getattr(_calls, "connections", None)
    if connections is None or _calls.pid != os.getpid():  # a forked child never uses its parent's
        connections = _calls.connections = {}
        _calls.pid = os.getpid()
    server = _server(client)
    connection = connections.get(server)
    if connection is None:
        connection = connections[server] = client.connection_pool.make_connection()
    try:
        connection.send_packed_command(connection.pack_commands(commands), check_health=False)
        replies: list[Any] = []
        for _ in commands:
            try:
                replies.append(connection.read_response())
            except ResponseError as error:
                replies.append(error)
        return replies
    except BaseException:
        connection.disconnect()  # whatever was half read is gone with it
        raise


def _server(client: Any) -> tuple[Any, ...]:
    """What makes two clients' commands interchangeable: the same server, database and user."""
    kwargs = client.connection_pool.connection_kwargs
    return (client.connection_pool.connection_class, kwargs.get("host"), kwargs.get("port"), kwargs.get("path"),
            kwargs.get("db"), kwargs.get("username"))


_instance: tuple[int, _Sender] | None = None
_lock = threading.Lock()


def _sender() -> _Sender:
    global _instance
    found = _instance
    if found is None or found[0] != os.getpid():  # a forked pool process starts its own
        with _lock:
            found = _instance
            if found is None or found[0] != os.getpid():
                found = _instance = (os.getpid(), _Sender())
    return found[1]


atexit.register(flush)
