"""Time sequential `http_request` tasks against the benchmark's local HTTP server.

    .venv/bin/python -m bench.http_request [--requests 500] [--rounds 3]

Runs the task type in this process, as one worker pool process does (no broker, no database),
`--requests` times in a row per round against `bench.httpserver` (one process, 127.0.0.1), and
the same GETs through a bare urllib3 `PoolManager` as bench/rawtasks.py's `fetch` makes them
(the floor: one kept-alive connection, no SSRF check). Prints milliseconds per request, best
and median round, and the TCP connections this process opened (counted by wrapping
`socket.socket.connect`, a measurement probe of the standard library only).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ["JUNCTION_SSRF_ALLOWED_NETWORKS"] = "127.0.0.0/8"

import django  # noqa: E402
import urllib3  # noqa: E402

from bench import httpserver  # noqa: E402
from bench.stack import LOG_DIR, free_port  # noqa: E402

_connects = 0
_connect = socket.socket.connect


def _counting_connect(self: socket.socket, address: Any) -> None:
    global _connects
    _connects += 1
    _connect(self, address)


def timed(label: str, one: Callable[[int], None], requests: int, rounds: int) -> dict[str, Any]:
    global _connects
    per_request = []
    connects = []
    for _ in range(rounds):
        _connects = 0
        started = time.perf_counter()
        for i in range(requests):
            one(i)
        per_request.append((time.perf_counter() - started) * 1000 / requests)
        connects.append(_connects)
    row = {"label": label, "best_ms": min(per_request), "median_ms": statistics.median(per_request),
           "connects_per_round": connects}
    print(f"{label:<28} best {row['best_ms']:.3f} ms/request, median {row['median_ms']:.3f} ms/request, "
          f"TCP connects per round {connects}", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    django.setup()
    from tasks_catalog.base import TaskContext
    from tasks_catalog.registry import task_types

    port = free_port()
    procs = httpserver.start(port, 1, LOG_DIR)
    url = f"http://127.0.0.1:{port}/echo"
    socket.socket.connect = _counting_connect  # type: ignore[method-assign]
    try:
        task_type = task_types.get("http_request")
        defaults = {spec.name: spec.default for spec in task_type.fields}
        context = TaskContext(timeout=30)

        def junction(i: int) -> None:
            output = task_type.run({**defaults, "url": url, "query": {"n": i, "sleep_ms": 0}}, context)
            assert output["body"] == {"n": i + 1}, output

        http = urllib3.PoolManager(maxsize=64)

        def raw(i: int) -> None:
            response = http.request("GET", url, fields={"n": str(i), "sleep_ms": "0"}, timeout=30)
            assert json.loads(response.data) == {"n": i + 1}

        junction(0)
        raw(0)  # warm both (imports, first connection)
        timed("http_request task type", junction, args.requests, args.rounds)
        timed("urllib3 PoolManager (raw)", raw, args.requests, args.rounds)
    finally:
        socket.socket.connect = _connect  # type: ignore[method-assign]
        for proc in procs:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    main()
