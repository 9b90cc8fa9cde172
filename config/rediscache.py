"""The Redis client behind Django's default cache, for the few calls the cache API makes slow.

Django's `RedisCache` builds a new `redis.Redis` object for every operation and has no way to
send several commands in one round trip; under ASGI, Django even builds a new cache backend —
with a new connection pool, so a new connection — for every request's context. Counters on the
hot path (the run quota) use this client instead: one per process (and per forked child) and
cache location, with its own connection pool.
"""
from __future__ import annotations

import os
import threading

from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache

_lock = threading.Lock()
_client: tuple[int, str, object] | None = None


def redis_client():
    """Return a Redis client for the default cache's server, or None when it is not Redis."""
    global _client
    config = settings.CACHES["default"]
    location = str(config.get("LOCATION"))
    found = _client
    if found is not None and found[0] == os.getpid() and found[1] == location:
        return found[2]
    if not isinstance(caches["default"], RedisCache):
        return None
    import redis

    with _lock:
        options = config.get("OPTIONS", {})
        client = redis.Redis.from_url(location.split(",")[0], socket_timeout=options.get("socket_timeout"),
                                      socket_connect_timeout=options.get("socket_connect_timeout"))
        _client = (os.getpid(), location, client)
    return client
