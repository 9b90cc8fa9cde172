"""Process-local caches of the few rows every run call reads, kept true by invalidation.

A run call authenticates its caller (a user row, or an API key and its user) and looks up the
interaction and its current version before it does anything useful: rows that change a few
times a day but are read thousands of times a second. `HotCache` keeps them in the memory of
each API process, and every change to them is announced:

- at once in the process that makes it (a signal handler drops the entry), and again when
  its transaction commits;
- to every other process through Redis pub/sub (`junction:hot-cache`, on JUNCTION_EVENTS_URL),
  published after the commit, so a process that re-reads on the message sees the new row.

A process trusts its caches only while its subscription is up: before it is confirmed, and
from the moment it breaks until it is back (then everything is dropped, since messages may
have been missed), every read goes to the database. A read that raced an invalidation is not
kept (each cache has a generation, bumped by every invalidation, checked before storing). A
TTL (JUNCTION_HOT_CACHE_SECONDS) bounds what a missed message could ever cost.
The embedded mode is one process: its caches need no subscription.

What this buys and what it costs is in docs/execution.md ("What a call costs").
"""
from __future__ import annotations

import copy
import logging
import os
import threading
import time
from typing import Generic, Hashable, TypeVar

from django.conf import settings
from django.db import transaction

logger = logging.getLogger(__name__)

CHANNEL = "junction:hot-cache"
MAX_ENTRIES = 50_000  # per cache: past it the cache starts again empty (a bound, not an LRU)

V = TypeVar("V")
_caches: dict[str, HotCache] = {}


class HotCache(Generic[V]):
    """A dict with expiry, dropped on invalidation; values are handed out as copies."""

    def __init__(self, name: str):
        self.name = name
        self.generation = 0
        self._entries: dict[Hashable, tuple[float, V]] = {}
        _caches[name] = self

    def get(self, key: Hashable) -> V | None:
        if not _listener_ready():
            return None
        found = self._entries.get(key)
        if found is None or found[0] < time.monotonic():
            return None
        return copy.copy(found[1])  # a request may change its copy; never the cached one

    def ticket(self) -> int:
        """Take before reading the database; `put` keeps the value only if nothing changed since."""
        return self.generation

    def put(self, key: Hashable, value: V, ticket: int) -> None:
        if ticket != self.generation or not _listener_ready():
            return
        if len(self._entries) >= MAX_ENTRIES:
            self._entries.clear()
        self._entries[key] = (time.monotonic() + settings.JUNCTION_HOT_CACHE_SECONDS, copy.copy(value))

    def replace(self, key: Hashable, value: V) -> None:
        """Store a newer copy of a kept entry (e.g. a key's last use), keeping its expiry."""
        found = self._entries.get(key)
        if found is not None:
            self._entries[key] = (found[0], copy.copy(value))

    def drop(self, key: Hashable | None) -> None:
        """Forget `key` (None: everything)."""
        self.generation += 1
        if key is None:
            self._entries.clear()
        else:
            self._entries.pop(key, None)


def invalidate(name: str, key: Hashable | None = None) -> None:
    """Announce that the row behind `key` of cache `name` changed (None: the whole cache).

    Drops it here now and again after the commit, and tells every other process after the
    commit (before it, they could re-read and keep the old row).
    """
    _drop(name, key)

    def announce() -> None:
        _drop(name, key)
        _publish(name, key)

    transaction.on_commit(announce, robust=True)


def _drop(name: str, key: Hashable | None) -> None:
    cache = _caches.get(name)
    if cache is not None:
        cache.drop(key)


def _encode(name: str, key: Hashable | None) -> str:
    return f"{name}:{'' if key is None else key}"


def _decode(message: bytes | str) -> tuple[str, str | None]:
    text = message.decode() if isinstance(message, bytes) else message
    name, _, key = text.partition(":")
    return name, key or None


# --- the subscription ----------------------------------------------------------------------------

_listener: _Listener | None = None
_listener_lock = threading.Lock()


def _listener_ready() -> bool:
    """Whether this process may trust its caches: always in the embedded mode; otherwise only
    while its subscription to invalidations is up (started on first use)."""
    url = settings.JUNCTION_EVENTS_URL
    if not url or not settings.JUNCTION_HOT_CACHE_SECONDS:
        return bool(settings.JUNCTION_HOT_CACHE_SECONDS) and not url
    global _listener
    if _listener is None or _listener.url != url or _listener.pid != os.getpid():  # a forked child: its own
        with _listener_lock:
            if _listener is None or _listener.url != url or _listener.pid != os.getpid():
                _listener = _Listener(url)
                _listener.start()
    return _listener.up.is_set()


def _publish(name: str, key: Hashable | None) -> None:
    url = settings.JUNCTION_EVENTS_URL
    if not url:
        return
    try:
        _publisher(url).publish(CHANNEL, _encode(name, key))
    except Exception:  # the TTL bounds the damage; a change must not fail on the broadcast
        logger.warning("could not announce a change to the hot caches (%s)", name, exc_info=True)


_publishers: dict[tuple[int, str], object] = {}


def _publisher(url: str):
    """One client per process (a forked child makes its own) and URL."""
    import redis

    key = (os.getpid(), url)
    client = _publishers.get(key)
    if client is None:
        client = _publishers[key] = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    return client


class _Listener(threading.Thread):
    """Receives invalidations for this process; `up` is set while the subscription holds."""

    def __init__(self, url: str):
        super().__init__(name="junction-hot-cache", daemon=True)
        self.url = url
        self.pid = os.getpid()
        self.up = threading.Event()

    def run(self) -> None:
        import redis

        while _listener is self:  # a newer one (another URL, e.g. in tests) replaces it
            pubsub = None
            try:
                client = redis.Redis.from_url(self.url, socket_connect_timeout=2, socket_timeout=10,
                                              health_check_interval=5)
                pubsub = client.pubsub(ignore_subscribe_messages=False)
                pubsub.subscribe(CHANNEL)
                while _listener is self:
                    message = pubsub.get_message(timeout=2.0)
                    if message is None:
                        continue
                    if message["type"] == "subscribe":
                        for cache in list(_caches.values()):  # what was kept meanwhile may be stale
                            cache.drop(None)
                        self.up.set()
                    elif message["type"] == "message":
                        _drop(*_decode(message["data"]))
            except Exception as error:  # the connection broke: distrust the caches until it is back
                self.up.clear()
                logger.info("hot-cache invalidations unavailable (%s): caches bypassed until Redis is back",
                            error)
            finally:
                self.up.clear()
                if pubsub is not None:
                    try:
                        pubsub.close()
                    except Exception:
                        pass
            time.sleep(1.0)


def clear_all() -> None:
    """Drop every entry of every cache in this process (tests)."""
    for cache in list(_caches.values()):
        cache.drop(None)


__all__ = ["HotCache", "invalidate", "clear_all", "CHANNEL"]
