"""The raw-Celery baseline: the benchmark's DAGs as hand-written canvases of no-op tasks.

A separate, minimal Celery app on the same Redis as the Junction stack (its own queue,
`rawbench`), run by its own `celery -A bench.rawtasks worker` processes with the same pool
settings. No database, no executor, no finishing task: the floor for anything built on Celery.
The worker-level delivery settings mirror Junction's crash-safety settings (config/settings.py:
late acks, reject on worker lost, prefetch 1), so the broker does the same work per message and
the comparison measures the engine, not a different delivery policy.
"""
from __future__ import annotations

import os
import time

from celery import Celery, chain, chord, group

app = Celery(
    "rawbench",
    broker=os.environ.get("RAWBENCH_BROKER_URL", "redis://127.0.0.1:6379/10"),
    backend=os.environ.get("RAWBENCH_RESULT_BACKEND", "redis://127.0.0.1:6379/11"),
)
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    timezone="UTC",
    task_default_queue="rawbench",
    result_expires=3600,
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
)


@app.task(name="rawbench.noop")
def noop() -> None:
    return None


@app.task(name="rawbench.sleep")
def sleep(seconds: float) -> None:
    time.sleep(seconds)


def diamond():
    """A ∥ B → C."""
    return chord([noop.si(), noop.si()], noop.si())


def chain_of(length: int):
    return chain(*[noop.si() for _ in range(length)])


def fan_out(width: int):
    """1 → width → 1 (a group followed by a task inside a chain becomes a chord)."""
    return chain(noop.si(), group([noop.si() for _ in range(width)]), noop.si())


def parallel_delay(seconds: float):
    """Two parallel sleeps → join."""
    return chord([sleep.si(seconds), sleep.si(seconds)], noop.si())


CANVASES = {
    "diamond": diamond,
    "chain20": lambda: chain_of(20),
    "fanout50": lambda: fan_out(50),
    "delay": lambda: parallel_delay(1.0),
}


def run_once(scenario: str, timeout: float = 60) -> None:
    """Send one canvas and block until its last task has run (raises if it did not)."""
    CANVASES[scenario]().apply_async().get(timeout=timeout, propagate=True, disable_sync_subtasks=False)
