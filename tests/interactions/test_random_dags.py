"""Random DAGs on real workers agree with a reference interpreter of SPEC §3.

Hypothesis builds graphs of 2-15 tasks, each a `transform` (completes), a `fail` (both run
fused, where they become ready) or a `delay` of 0 s (a step that needs a worker), with random
`execute_after` edges to earlier tasks accepting `completed`, `failed` or both. Each is
run through the API with `Prefer: wait` on real Celery workers; every task's terminal status,
the session's status and result must match the interpreter below, and no task may have
started before a task it depends on finished.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import make_interaction

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

ACCEPTS = (("completed",), ("failed",), ("completed", "failed"))
_names = itertools.count(1)


@dataclass(frozen=True)
class Node:
    name: str
    fails: bool
    after: dict[str, tuple[str, ...]]
    step: bool = False  # a task that needs a worker (a `delay` of 0 s); others run fused


@st.composite
def dags(draw) -> list[Node]:
    size = draw(st.integers(min_value=2, max_value=15))
    nodes: list[Node] = []
    for index in range(size):
        earlier = [node.name for node in nodes]
        preds = draw(st.lists(st.sampled_from(earlier), unique=True, max_size=min(3, len(earlier)))) if earlier else []
        kind = draw(st.sampled_from(("transform", "fail", "step")))
        nodes.append(Node(
            name=f"t{index}",
            fails=kind == "fail",
            after={pred: draw(st.sampled_from(ACCEPTS)) for pred in preds},
            step=kind == "step",
        ))
    return nodes


def definition(nodes: list[Node]) -> dict:
    tasks = {}
    for index, node in enumerate(nodes):
        if node.fails:
            task = {"type": "fail", "body": {"message": f"{node.name} failed"}}
        elif node.step:
            task = {"type": "delay", "body": {"seconds": 0}}
        else:
            task = {"type": "transform", "body": {"data": {"n": index}, "expression": "n"}}
        if node.after:
            task["execute_after"] = {pred: list(statuses) for pred, statuses in node.after.items()}
        tasks[node.name] = task
    return tasks


def interpret(nodes: list[Node]) -> tuple[dict[str, str], str, dict]:
    """SPEC §3, by hand: each task's status, the session's status, and its result."""
    status: dict[str, str] = {}
    for node in nodes:  # earlier tasks come first: a topological order
        ready = all(status[pred] in accepted for pred, accepted in node.after.items())
        status[node.name] = ("failed" if node.fails else "completed") if ready else "skipped"
    dependants = {node.name: [other for other in nodes if node.name in other.after] for node in nodes}
    handled = {
        name: any("failed" in child.after[name] and status[child.name] != "skipped" for child in dependants[name])
        for name in status
    }
    unhandled = [name for name, value in status.items() if value == "failed" and not handled[name]]
    result: dict[str, Any] = {
        node.name: {} if node.step else int(node.name[1:])
        for node in nodes
        if not dependants[node.name] and status[node.name] == "completed"
    }
    return status, "failed" if unhandled else "completed", result


def ts(value: str) -> datetime:
    return datetime.fromisoformat(value)


@settings(max_examples=25, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(nodes=dags())
def test_random_dags_match_the_reference_interpreter(celery_workers, api, user, nodes):
    interaction = make_interaction(user, tasks=definition(nodes), name=f"dag-{next(_names)}", active=True)
    response = api.post(f"/api/interactions/{interaction.id}/run/", {}, format="json", HTTP_PREFER="wait=60")
    assert response.status_code == 200, response.json()
    session = response.json()

    expected_tasks, expected_session, expected_result = interpret(nodes)
    assert {name: task["status"] for name, task in session["tasks"].items()} == expected_tasks
    assert session["status"] == expected_session
    assert session["result"] == expected_result
    if expected_session == "failed":
        assert session["error"].startswith("unhandled failure in ")

    tasks = session["tasks"]
    for node in nodes:
        task = tasks[node.name]
        if task["status"] == "skipped":
            assert task["started_at"] is None and task["attempts"] == 0
            continue
        assert task["attempts"] == 1
        assert ts(task["started_at"]) <= ts(task["finished_at"])
        for pred in node.after:
            # A task that ran had every predecessor ended before it started.
            assert tasks[pred]["finished_at"] is not None
            assert ts(task["started_at"]) >= ts(tasks[pred]["finished_at"]), (node.name, pred, tasks)
