"""Micro-benchmark of the Redis work in one worker step, in one process against the local Redis.

    DJANGO_SETTINGS_MODULE=config.test_settings CELERY_RESULT_BACKEND=redis://127.0.0.1:6379/<db> \
        .venv/bin/python -m bench.redis_hotpath [-n 10000]

Loops, each `n` times, in this process:
- `slots`: take one slow-task slot, give it back (`slots.take`, `Slot.release`);
- `publish`: one `events.publish_task_changes` of one task's record;
- `waited`: `publish` while a thread of this process waits for the session's end as the ASGI
  server does (`events.wait_for_end` on a loop marked `serve_on_this_loop`); its CPU figure is
  the waiting thread's alone: what a waiting caller's server spends on the session's task events;
- `io`: one PING on a connection of its own, standing in for the I/O of a step (the task
  itself, its SQL): the baseline of `step`;
- `events`: the events of a step of a task that takes no slot: publish the `running` record,
  I/O (the PING), publish the finished record;
- `step`: what a worker step of a slow task does around its I/O: take a slot, publish the
  `running` record, I/O (the PING), publish the finished record, give the slot back.

Printed per iteration, each round and the best of the rounds: the calling thread's wall time, and the whole process's CPU time (every
thread, counted until what was queued has been sent). Not part of `bench.run`: it measures the
code paths, not a deployment.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import threading
import time
import uuid
from datetime import datetime, timezone
from typing import Any, Callable

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.test_settings")
django.setup()

from django.conf import settings  # noqa: E402

from interactions import events, slots  # noqa: E402

NOW = datetime.now(timezone.utc)
RECORD = {"status": "completed", "output": {"status_code": 200, "body": {"ok": True, "n": 12345}},
          "error": None, "attempts": 1, "started_at": NOW, "finished_at": NOW, "logs": "", "worker": "celery@bench"}


def drain() -> None:
    """Wait until this process has sent what it queued (old and new code alike)."""
    try:
        from interactions import redis_sender  # type: ignore[attr-defined]  # the new code only
    except ImportError:
        publisher = getattr(events, "_Publisher", None)
        found = publisher._instance if publisher is not None else None
        while found is not None and found[1].pending:
            time.sleep(0.0005)
        time.sleep(0.005)  # the last batch in flight
        return
    redis_sender.flush()


def measure(name: str, n: int, body: Callable[[int], Any]) -> tuple[float, float]:
    drain()
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for i in range(n):
        body(i)
    wall = time.perf_counter() - wall0
    drain()
    cpu = time.process_time() - cpu0
    print(f"  {name:8} wall {wall / n * 1e6:7.1f} µs   CPU {cpu / n * 1e6:7.1f} µs   per iteration", flush=True)
    return wall / n, cpu / n


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", help="one loop: slots, publish, waited, io, events or step")
    args = parser.parse_args()
    import redis

    io_client = redis.Redis.from_url(settings.JUNCTION_EVENTS_URL)
    user = f"bench-{uuid.uuid4().hex}"
    session = str(uuid.uuid4())
    waited_session = str(uuid.uuid4())
    waiter = Waiter(waited_session)

    def slot_pair(i: int) -> None:
        slot = slots.take(user_id=user, lease_seconds=60, label="bench")
        assert slot is not None
        slot.release()

    def publish(i: int) -> None:
        events.publish_task_changes(session, {"a": RECORD})

    def io(i: int) -> None:
        io_client.ping()

    def step_events(i: int) -> None:
        events.publish_task_changes(session, {"a": {**RECORD, "status": "running"}})
        io_client.ping()
        events.publish_task_changes(session, {"a": RECORD})

    def step(i: int) -> None:
        slot = slots.take(user_id=user, lease_seconds=60, label="bench")
        assert slot is not None
        events.publish_task_changes(session, {"a": {**RECORD, "status": "running"}})
        io_client.ping()
        events.publish_task_changes(session, {"a": RECORD})
        slot.release()

    def waited(i: int) -> None:
        events.publish_task_changes(waited_session, {"a": RECORD})

    print(f"{args.n} iterations, events on {settings.JUNCTION_EVENTS_URL}, slots on the cache "
          f"({settings.CACHES['default']['LOCATION']})", flush=True)
    best: dict[str, tuple[float, float]] = {}
    for round_ in range(args.rounds):
        print(f"round {round_ + 1}", flush=True)
        for name, body in (("slots", slot_pair), ("publish", publish), ("waited", waited), ("io", io), ("events", step_events),
                           ("step", step)):
            if args.only and name != args.only:
                continue
            waiter_before = waiter.cpu()
            wall, cpu = measure(name, args.n, body)
            if name == "waited":
                cpu = (waiter.settled() - waiter_before) / args.n
                print(f"  {'':8} of which the waiting thread CPU {cpu * 1e6:7.1f} µs", flush=True)
            found = best.get(name, (wall, cpu))
            best[name] = (min(found[0], wall), min(found[1], cpu))
    print("best of the rounds (the machine is shared: the least disturbed round)")
    for name, (wall, cpu) in best.items():
        print(f"  {name:8} wall {wall * 1e6:7.1f} µs   CPU {cpu * 1e6:7.1f} µs   per iteration")
    assert slots.held(user_id=user) == 0
    events.publish_session_end(waited_session, {"status": "completed", "tasks": {}})
    waiter.thread.join(10)


class Waiter:
    """A thread whose event loop waits for a session's end as the ASGI server's loop does."""

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        self.subscribed = threading.Event()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread = threading.Thread(target=asyncio.run, args=(self._wait(),), daemon=True)
        self.thread.start()
        self.subscribed.wait(10)

    async def _wait(self) -> None:
        self.loop = asyncio.get_running_loop()
        events.serve_on_this_loop()
        task = asyncio.ensure_future(events.wait_for_end(self.session_id, 3600))
        while not (events._hubs.get(self.loop) and events._hubs[self.loop].queues):
            await asyncio.sleep(0.01)
        self.subscribed.set()
        await task
        await asyncio.sleep(0.1)  # let the hub unsubscribe
        await events.close_server_loop()

    def settled(self) -> float:
        """The waiting thread's CPU time once it stopped using any (it has read what was sent)."""
        last = self.cpu()
        while True:
            time.sleep(0.2)
            now = self.cpu()
            if now - last < 0.001:
                return now
            last = now

    def cpu(self) -> float:
        """The waiting thread's CPU time so far."""
        async def now() -> float:
            return time.thread_time()

        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(now(), self.loop).result(10)


if __name__ == "__main__":
    main()
