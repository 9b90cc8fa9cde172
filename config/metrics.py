"""Prometheus metrics at `/metrics`: sessions started and finished, task durations, queues.

Counters live in the cache (Redis outside the embedded mode), so every API and worker process
adds to the same numbers and any process can expose them. Each label set is known in advance
(statuses, task types, buckets): exposition reads them all in one `get_many`.

Counting never costs the work it measures a round trip: each process adds to counters in its
own memory, and a background thread writes them in one pipelined round trip every
JUNCTION_METRICS_FLUSH_SECONDS (and at exit; `/metrics` writes its own process's first). A
process killed outright loses at most that interval of samples.
"""
from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections import Counter

from django.core.cache import cache, caches
from django.core.cache.backends.redis import RedisCache

from config.celery import queue_depths
from django.http import HttpResponse

logger = logging.getLogger(__name__)

SESSION_STATUSES = ("completed", "failed", "cancelled", "timed_out")
TASK_STATUSES = ("completed", "failed")
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
PREFIX = "metrics:"


_pending: Counter[str] = Counter()
_lock = threading.Lock()
_flusher_pid: int | None = None


def _incr(**amounts: int) -> None:
    """Add to this process's counters; the flusher writes them to the shared cache."""
    _start_flusher()
    with _lock:
        _pending.update(amounts)


def _start_flusher() -> None:
    """Start the flusher thread once per process (a forked pool process starts its own)."""
    global _flusher_pid
    if _flusher_pid == os.getpid():
        return
    with _lock:
        if _flusher_pid == os.getpid():
            return
        _pending.clear()  # inherited from the parent, which writes them itself
        _flusher_pid = os.getpid()
    threading.Thread(target=_flush_forever, name="metrics-flusher", daemon=True).start()
    atexit.register(flush)


def _flush_forever() -> None:
    from django.conf import settings

    while True:
        time.sleep(settings.JUNCTION_METRICS_FLUSH_SECONDS)
        flush()


def flush() -> None:
    """Write this process's counters to the shared cache now."""
    with _lock:
        amounts = dict(_pending)
        _pending.clear()
    if amounts:
        _write(amounts)


def _write(amounts: dict[str, int]) -> None:
    """Add to counters in one round trip; metrics never break the work they measure."""
    try:
        client = _redis_client()
        if client is not None:  # INCRBY creates missing keys: one pipelined round trip
            with client.pipeline(transaction=False) as pipe:
                for key, amount in amounts.items():
                    pipe.incrby(cache.make_and_validate_key(PREFIX + key), amount)
                pipe.execute()
            return
        for key, amount in amounts.items():
            if not cache.add(PREFIX + key, amount, timeout=None):
                cache.incr(PREFIX + key, amount)
    except Exception:  # the cache is down: lose the sample, not the request
        logger.warning("metrics: could not count %s", ", ".join(amounts), exc_info=True)


def _redis_client():
    """The Redis client behind the default cache, or None for another backend."""
    backend = caches["default"]
    if isinstance(backend, RedisCache):
        return backend._cache.get_client(write=True)  # Django's RedisCache keeps a pool per server
    return None


def session_started() -> None:
    _incr(sessions_started=1)


def session_finished(status: str) -> None:
    _incr(**{f"sessions_finished:{status}": 1})


def task_finished(task_type: str, status: str, seconds: float) -> None:
    bucket = next((str(b) for b in BUCKETS if seconds <= b), "+Inf")
    _incr(**{f"task:{task_type}:{status}:{bucket}": 1, f"task_ms:{task_type}:{status}": int(seconds * 1000)})


def render() -> str:
    """Return every metric in the Prometheus text format."""
    flush()
    from tasks_catalog.registry import task_types

    types = [t.key for t in task_types]
    keys = ["sessions_started"] + [f"sessions_finished:{s}" for s in SESSION_STATUSES]
    for kind in types:
        for status in TASK_STATUSES:
            keys += [f"task:{kind}:{status}:{b}" for b in (*map(str, BUCKETS), "+Inf")]
            keys.append(f"task_ms:{kind}:{status}")
    try:
        values = {k[len(PREFIX):]: v for k, v in cache.get_many([PREFIX + k for k in keys]).items()}
    except Exception:
        values = {}
    lines = [
        "# HELP junction_sessions_started_total Sessions started.",
        "# TYPE junction_sessions_started_total counter",
        f"junction_sessions_started_total {values.get('sessions_started', 0)}",
        "# HELP junction_sessions_finished_total Sessions finished, by status.",
        "# TYPE junction_sessions_finished_total counter",
    ]
    lines += [f'junction_sessions_finished_total{{status="{s}"}} {values.get(f"sessions_finished:{s}", 0)}'
              for s in SESSION_STATUSES]
    lines += [
        "# HELP junction_task_duration_seconds Task run time, by task type and status.",
        "# TYPE junction_task_duration_seconds histogram",
    ]
    for kind in types:
        for status in TASK_STATUSES:
            labels = f'type="{kind}",status="{status}"'
            total = 0
            for bucket in (*map(str, BUCKETS), "+Inf"):
                total += values.get(f"task:{kind}:{status}:{bucket}", 0)
                lines.append(f'junction_task_duration_seconds_bucket{{{labels},le="{bucket}"}} {total}')
            lines.append(f"junction_task_duration_seconds_count{{{labels}}} {total}")
            lines.append(f"junction_task_duration_seconds_sum{{{labels}}} {values.get(f'task_ms:{kind}:{status}', 0) / 1000}")
    lines += [
        "# HELP junction_queue_depth Messages waiting in each Celery queue.",
        "# TYPE junction_queue_depth gauge",
    ]
    lines += [f'junction_queue_depth{{queue="{name}"}} {depth}' for name, depth in (queue_depths() or {}).items()]
    return "\n".join(lines) + "\n"


def metrics_view(request):
    return HttpResponse(render(), content_type="text/plain; version=0.0.4; charset=utf-8")
