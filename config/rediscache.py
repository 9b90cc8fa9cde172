"""The Redis client behind Django's default cache, for the few calls the cache API makes slow.

Django's `RedisCache` builds a new `redis.Redis` object for every operation and has no way to
send several commands in one round trip. Counters on the hot path (the run quota) use this
client instead: one per process (and per forked child), on the cache's own connection pool.
"""
from __future__ import annotations

import os
import threading

from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache

_lock = threading.Lock()
_client: tuple[int, object, object] | None = None


def redis_client():
    """Return the default cache's Redis client, or None when the cache is not Redis."""
    global _client
    backend = caches["default"]
    found = _client
    if found is not None and found[0] == os.getpid() and found[1] is backend:
        return found[2]
    if not isinstance(backend, RedisCache):
        return None
    with _lock:
        client = backend._cache.get_client(write=True)  # built on the cache's pool for this server
        _client = (os.getpid(), backend, client)
    return client
