"""The raw-Celery baseline: the benchmark's DAGs as hand-written canvases.

Two minimal Celery apps on the same Redis as the Junction stack, one per delivery policy, each
run by its own `celery -A bench.rawtasks:<app> worker` processes on its own queue:

- `default_app` (queue `rawbench-default`): Celery's defaults, what a user who picks raw Celery
  gets — early acks, prefetch multiplier 4, no reject on worker lost;
- `junction_app` (queue `rawbench-junction`): Junction's crash-safety settings
  (config/settings.py: late acks, reject on worker lost, prefetch 1), so the broker does the
  same work per message and the comparison measures the engine, not the delivery policy.

Pure scenarios use no-op tasks. I/O scenarios use `fetch`, which makes the same GET to the
benchmark's local HTTP server as Junction's `http_request` (urllib3, JSON body parsed) and
returns the same shape (`{status_code, headers, body}`); `join` plays the joining `transform`.
No database, no executor: the floor for anything built on Celery.
"""
from __future__ import annotations

import json
import os
import time
from typing import Any, Callable

import urllib3
from celery import Celery, chain, chord, group
from celery.canvas import Signature

_REDIS = os.environ.get("JUNCTION_BENCH_REDIS_URL", "redis://127.0.0.1:6379").rstrip("/")  # as bench/stack.py
BROKER = os.environ.get("RAWBENCH_BROKER_URL", f"{_REDIS}/10")
BACKEND = os.environ.get("RAWBENCH_RESULT_BACKEND", f"{_REDIS}/11")

DELIVERY_SETTINGS: dict[str, dict[str, Any]] = {
    "default": {},
    "junction": {
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
    },
}

# One pool per worker process (prefork child, thread or greenlet share it), as http_request
# keeps one per destination; maxsize lets threads and greenlets of one process run at once.
_http = urllib3.PoolManager(maxsize=64)


def make_app(delivery: str) -> Celery:
    """A raw app with the delivery policy `delivery` ("default" or "junction") and its tasks."""
    app = Celery(f"rawbench-{delivery}", broker=BROKER, backend=BACKEND, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        timezone="UTC",
        task_default_queue=f"rawbench-{delivery}",
        result_expires=3600,
        **DELIVERY_SETTINGS[delivery],
    )

    @app.task(name="rawbench.noop", shared=False)
    def noop(*args: Any) -> None:
        return None

    @app.task(name="rawbench.sleep", shared=False)
    def sleep(seconds: float) -> None:
        time.sleep(seconds)

    @app.task(name="rawbench.fetch", shared=False)
    def fetch(previous: dict | None, url: str, sleep_ms: int) -> dict[str, Any]:
        return fetch_json(url, previous, sleep_ms)

    @app.task(name="rawbench.join", shared=False)
    def join(results: list[dict[str, Any]]) -> int:
        return len(results)

    return app


def fetch_json(url: str, previous: dict | None, sleep_ms: int) -> dict[str, Any]:
    """GET `url?n=…&sleep_ms=…` (n from the previous response, as Junction's chain `$ref`s it)."""
    n = previous["body"]["n"] if previous else 0
    response = _http.request("GET", url, fields={"n": str(n), "sleep_ms": str(sleep_ms)}, timeout=30)
    if not 200 <= response.status < 300:
        raise RuntimeError(f"HTTP {response.status}")
    return {"status_code": response.status, "headers": dict(response.headers),
            "body": json.loads(response.data)}


default_app = make_app("default")
junction_app = make_app("junction")
APPS = {"default": default_app, "junction": junction_app}


def _canvases(app: Celery, url: str, sleep_ms: int) -> dict[str, Callable[[], Signature]]:
    noop, sleep, fetch, join = (app.tasks[f"rawbench.{n}"] for n in ("noop", "sleep", "fetch", "join"))

    def first():  # a root fetch: no predecessor
        return fetch.si(None, url, sleep_ms)

    def then():  # a fetch fed the previous task's result
        return fetch.s(url, sleep_ms)

    return {
        "diamond": lambda: chord([noop.si(), noop.si()], noop.si()),
        "chain20": lambda: chain(*[noop.si() for _ in range(20)]),
        # A group after a task inside a chain becomes a chord into the last task.
        "fanout50": lambda: chain(noop.si(), group([noop.si() for _ in range(50)]), noop.si()),
        "io_diamond": lambda: chord([first(), first()], join.s()),
        "io_chain20": lambda: chain(first(), *[then() for _ in range(19)]),
        "io_fanout50": lambda: chain(first(), group([then() for _ in range(50)]), join.s()),
        "delay": lambda: chord([sleep.si(1.0), sleep.si(1.0)], noop.si()),
    }


def canvas_runner(delivery: str, scenario: str, *, url: str = "", sleep_ms: int = 0) -> Callable[[], None]:
    """A function that sends one canvas and blocks until its last task has run (raises if not)."""
    build = _canvases(APPS[delivery], url, sleep_ms)[scenario]

    def run_once(timeout: float = 60) -> None:
        build().apply_async().get(timeout=timeout, propagate=True, disable_sync_subtasks=False)

    return run_once
