"""Closed-loop clients: each a spawned process running one operation in a loop.

An operation is one Junction call (`POST …/run/` with `Prefer: wait=30`, one `requests`
connection per client) or one raw canvas (`apply_async()` + `get()`). Each client is its own
process, so the raw baseline is not held back by one interpreter's GIL and both sides are driven
identically. Every loop is bounded in count and in time.
"""
from __future__ import annotations

import gc
import multiprocessing as mp
import os
import time
from datetime import datetime
from typing import Any, Callable

from bench.counters import cpu_seconds

WAIT_HEADER = "wait=30"
SIDES = ("junction", "raw-default", "raw-junction")


def _parse_ts(value: str | None) -> float | None:
    return datetime.fromisoformat(value).timestamp() if value else None


def _session_times(data: dict[str, Any], sent: float, received: float) -> dict[str, Any]:
    """Wall-clock timestamps (epoch s) of one session as recorded by Junction, plus the client's."""
    return {
        "sent": sent, "received": received,
        "created": _parse_ts(data.get("created_at")),
        "started": _parse_ts(data.get("started_at")),
        "finished": _parse_ts(data.get("finished_at")),
        "tasks": {name: (_parse_ts(t.get("started_at")), _parse_ts(t.get("finished_at")))
                  for name, t in (data.get("tasks") or {}).items()},
    }


def _raw_op(spec: dict[str, Any]) -> Callable[[], tuple[bool, Any]]:
    from bench.rawtasks import canvas_runner

    run_once = canvas_runner(spec["side"].removeprefix("raw-"), spec["scenario"],
                             url=spec.get("echo_url", ""), sleep_ms=spec.get("sleep_ms", 0))

    def raw_op() -> tuple[bool, Any]:
        run_once(timeout=60)
        return True, None

    return raw_op


def _junction_op(spec: dict[str, Any]) -> Callable[[], tuple[bool, Any]]:
    import requests

    http = requests.Session()
    url = f"{spec['base_url']}/api/interactions/{spec['interaction']}/run/"
    headers = {"Authorization": f"Api-Key {spec['api_key']}", "Prefer": WAIT_HEADER}
    payload = spec["input"]
    keep_times = spec.get("keep_times", False)

    def http_op() -> tuple[bool, Any]:
        sent = time.time()
        response = http.post(url, json=payload, headers=headers, timeout=60)
        received = time.time()
        if response.status_code != 200:
            return False, f"HTTP {response.status_code}: {response.text[:200]}"
        data = response.json()
        if data.get("status") != "completed":
            return False, f"session {data.get('id')} {data.get('status')}: {data.get('error')}"
        return True, _session_times(data, sent, received) if keep_times else None

    return http_op


def _loop(op: Callable[[], tuple[bool, Any]], count: int, duration: float) -> dict[str, Any]:
    """Run `op` until `count` ops or `duration` s; a raised error is a failed op, not a crash."""
    deadline = time.monotonic() + duration
    latencies, extras, errors = [], [], []
    while len(latencies) + len(errors) < count and time.monotonic() < deadline:
        start = time.perf_counter()
        try:
            ok, extra = op()
        except Exception as exc:  # a timeout or a refused connection is a failed op
            ok, extra = False, f"{type(exc).__name__}: {exc}"
        elapsed = time.perf_counter() - start
        if ok:
            latencies.append(elapsed)
            if extra is not None:
                extras.append(extra)
        else:
            errors.append(extra)
    return {"latencies": latencies, "extras": extras, "errors": errors}


def client_main(spec: dict[str, Any], measuring: bool, ready, go, out) -> None:
    """One client: warm up, then (if `measuring`) run the op in a loop when told; report latencies."""
    try:
        op = _junction_op(spec) if spec["side"] == "junction" else _raw_op(spec)
        warm = _loop(op, spec["warmup"], 60)
        ready.put(len(warm["latencies"]) + len(warm["errors"]))
        if not go.wait(180):
            out.put({"error": "never started"})
            return
        cpu0 = time.process_time()
        first = time.time()
        run = _loop(op, spec["max_count"] if measuring else 0, spec["duration"])
        last = time.time()
        op = None
        gc.collect()  # release Celery results (their __del__ unsubscribes) before shutdown
        out.put({"latencies": run["latencies"], "errors": run["errors"][:5], "error_count": len(run["errors"]),
                 "extras": run["extras"], "first": first, "last": last if measuring else first,
                 "cpu": time.process_time() - cpu0, "measuring": measuring})
    except Exception as exc:  # report set-up failures to the parent instead of hanging it
        ready.put(0)
        out.put({"error": f"{type(exc).__name__}: {exc}"})
    # Skip interpreter teardown: library finalizers (Celery's result consumer) are noisy there.
    out.close()
    out.join_thread()
    os._exit(0)


def drive(spec: dict[str, Any], clients: int, duration: float, max_count: int,
          server_pids: set[int] = frozenset(), *, warmup: int = 0, warmup_clients: int = 4,
          warmed_up: Callable[[], None] | None = None) -> dict[str, Any]:
    """Warm up with `max(clients, warmup_clients)` processes (`warmup` ops each), then measure
    `clients` of them at once; return latencies, throughput, CPU, errors and the warm-up calls.
    `warmed_up` is called between the two (the statement counters start there).

    Warming up from several clients at once loads the code, opens the connections and compiles
    the version in every pool process, not just the one a single client would reach.
    """
    ctx = mp.get_context("spawn")
    ready, out, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    spec = {**spec, "duration": duration, "max_count": max_count, "warmup": warmup}
    procs = [ctx.Process(target=client_main, args=(spec, i < clients, ready, go, out), daemon=True)
             for i in range(max(clients, warmup_clients if warmup else 0))]
    try:
        for proc in procs:
            proc.start()
        warmup_calls = sum(ready.get(timeout=240) for _ in procs)
        if warmed_up is not None:
            warmed_up()
        started = time.time()
        cpu0 = cpu_seconds(server_pids)
        go.set()
        reports = [out.get(timeout=duration + 180) for _ in procs]
        server_cpu = cpu_seconds(server_pids) - cpu0
    finally:
        for proc in procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=5)
    failed = [r["error"] for r in reports if "error" in r]
    if failed:
        raise RuntimeError(f"client failed: {failed[0]}")
    reports = [r for r in reports if r["measuring"]]
    latencies = [x for r in reports for x in r["latencies"]]
    elapsed = max(r["last"] for r in reports) - started
    calls = len(latencies) + sum(r["error_count"] for r in reports)
    return {
        "latencies": latencies,
        "count": len(latencies),
        "calls": calls,
        "warmup_calls": warmup_calls,
        "elapsed": elapsed,
        "per_min": len(latencies) / elapsed * 60 if elapsed > 0 else 0.0,
        "error_count": sum(r["error_count"] for r in reports),
        "server_cpu_ms": server_cpu * 1000 / max(1, len(latencies)),
        "client_cpu_ms": sum(r["cpu"] for r in reports) * 1000 / max(1, len(latencies)),
        "errors": [e for r in reports for e in r["errors"]][:5],
        "extras": [x for r in reports for x in r["extras"]],
    }
