"""The benchmark's scenarios as Junction interaction definitions (see bench/rawtasks.py for the
same DAGs as raw Celery canvases).

Pure scenarios are `transform` tasks; in I/O scenarios every task but the joining `transform`
is an `http_request` to the benchmark's local HTTP server (bench/httpserver.py), each request of
a chain carrying the previous answer's `n` (a `$ref`), so a chain is a real chain.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    tasks: int  # Junction tasks (and raw Celery tasks) per session
    kind: str  # "pure", "io", "delay"


SCENARIOS = {s.key: s for s in (
    Scenario("diamond", "pure diamond", 3, "pure"),
    Scenario("chain20", "pure chain of 20", 20, "pure"),
    Scenario("fanout50", "pure fan-out 1 → 50 → 1", 52, "pure"),
    Scenario("io_diamond", "I/O diamond", 3, "io"),
    Scenario("io_chain20", "I/O chain of 20", 20, "io"),
    Scenario("io_fanout50", "I/O fan-out 1 → 50 → 1", 52, "io"),
    Scenario("delay", "two parallel 1 s delays → join", 3, "delay"),
)}
CROWD_DELAY_SECONDS = 10.0


def _after(*names: str) -> dict[str, list[str]]:
    return {name: ["completed"] for name in names}


def pure_diamond() -> dict[str, Any]:
    return {
        "a": {"type": "transform", "body": {"data": None, "expression": "x"}},
        "b": {"type": "transform", "body": {"data": {"y": 2}, "expression": "y"}},
        "c": {"type": "transform",
              "body": {"data": {"a": {"$ref": "a"}, "b": {"$ref": "b"}}, "expression": "sum([a, b])"},
              "execute_after": _after("a", "b")},
    }


def pure_chain(length: int) -> dict[str, Any]:
    tasks: dict[str, Any] = {"t00": {"type": "transform", "body": {"data": 0, "expression": "@"}}}
    for i in range(1, length):
        tasks[f"t{i:02d}"] = {
            "type": "transform",
            "body": {"data": {"$ref": f"t{i - 1:02d}"}, "expression": "sum([@, `1`])"},
            "execute_after": _after(f"t{i - 1:02d}"),
        }
    return tasks


def pure_fan_out(width: int) -> dict[str, Any]:
    tasks: dict[str, Any] = {"src": {"type": "transform", "body": {"data": {"n": width}, "expression": "n"}}}
    middle = [f"m{i:02d}" for i in range(width)]
    for name in middle:
        tasks[name] = {"type": "transform", "body": {"data": {"$ref": "src"}, "expression": "@"},
                       "execute_after": _after("src")}
    tasks["sink"] = {"type": "transform",
                     "body": {"data": {m: {"$ref": m} for m in middle}, "expression": "length(values(@))"},
                     "execute_after": _after(*middle)}
    return tasks


def _fetch(url: str, sleep_ms: int, previous: str | None) -> dict[str, Any]:
    """An http_request to the echo server; `n` is the previous task's answer (or 0)."""
    n: Any = {"$ref": f"{previous}.body.n"} if previous else 0
    task: dict[str, Any] = {"type": "http_request",
                            "body": {"method": "GET", "url": url, "query": {"n": n, "sleep_ms": sleep_ms}}}
    if previous:
        task["execute_after"] = _after(previous)
    return task


def io_diamond(url: str, sleep_ms: int) -> dict[str, Any]:
    return {
        "a": _fetch(url, sleep_ms, None),
        "b": _fetch(url, sleep_ms, None),
        "c": {"type": "transform",
              "body": {"data": {"a": {"$ref": "a.body.n"}, "b": {"$ref": "b.body.n"}},
                       "expression": "sum([a, b])"},
              "execute_after": _after("a", "b")},
    }


def io_chain(url: str, sleep_ms: int, length: int) -> dict[str, Any]:
    tasks = {"t00": _fetch(url, sleep_ms, None)}
    for i in range(1, length):
        tasks[f"t{i:02d}"] = _fetch(url, sleep_ms, f"t{i - 1:02d}")
    return tasks


def io_fan_out(url: str, sleep_ms: int, width: int) -> dict[str, Any]:
    tasks = {"src": _fetch(url, sleep_ms, None)}
    middle = [f"m{i:02d}" for i in range(width)]
    for name in middle:
        tasks[name] = _fetch(url, sleep_ms, "src")
    tasks["sink"] = {"type": "transform",
                     "body": {"data": {m: {"$ref": f"{m}.body.n"} for m in middle},
                              "expression": "length(values(@))"},
                     "execute_after": _after(*middle)}
    return tasks


def parallel_delay(seconds: float) -> dict[str, Any]:
    return {
        "d1": {"type": "delay", "body": {"seconds": seconds}},
        "d2": {"type": "delay", "body": {"seconds": seconds}},
        "join": {"type": "transform",
                 "body": {"data": {"d1": {"$ref": "d1"}, "d2": {"$ref": "d2"}}, "expression": "keys(@)"},
                 "execute_after": _after("d1", "d2")},
    }


def one_delay(seconds: float) -> dict[str, Any]:
    return {"wait": {"type": "delay", "body": {"seconds": seconds}}}


def interactions(url: str, sleep_ms: int) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """Scenario key → (tasks of the interaction, input of each run); plus the crowd's."""
    build: dict[str, tuple[Callable[[], dict[str, Any]], dict[str, Any]]] = {
        "diamond": (pure_diamond, {"a": {"data": {"x": 1}}}),
        "chain20": (lambda: pure_chain(20), {}),
        "fanout50": (lambda: pure_fan_out(50), {}),
        "io_diamond": (lambda: io_diamond(url, sleep_ms), {}),
        "io_chain20": (lambda: io_chain(url, sleep_ms, 20), {}),
        "io_fanout50": (lambda: io_fan_out(url, sleep_ms, 50), {}),
        "delay": (lambda: parallel_delay(1.0), {}),
        "crowd": (lambda: one_delay(CROWD_DELAY_SECONDS), {}),
    }
    return {key: (tasks(), run_input) for key, (tasks, run_input) in build.items()}
