"""Sessions run on real Celery worker processes (Redis broker, PostgreSQL)."""
from __future__ import annotations

import time
from datetime import datetime

import pytest

from tests.conftest import make_interaction

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def run(api, interaction, body=None, wait=30, **headers):
    return api.post(
        f"/api/interactions/{interaction.id}/run/", body or {}, format="json",
        HTTP_PREFER=f"wait={wait}", **headers,
    )


def ts(value: str) -> datetime:
    return datetime.fromisoformat(value)


def test_diamond_runs_to_completion(celery_workers, api, user):
    interaction = make_interaction(user, active=True, tasks={
        "a": {"type": "transform", "body": {"data": None, "expression": "x"}},
        "b": {"type": "transform", "body": {"data": {"$ref": "a"}, "expression": "[@, `2`]"}, "execute_after": {"a": ["completed"]}},
        "c": {"type": "transform", "body": {"data": {"$ref": "a"}, "expression": "[@, `1`]"}, "execute_after": {"a": ["completed"]}},
        "d": {"type": "transform", "body": {"data": {"b": {"$ref": "b"}, "c": {"$ref": "c"}}, "expression": "sum([sum(b), sum(c)])"},
              "execute_after": {"b": ["completed"], "c": ["completed"]}},
    })
    response = run(api, interaction, {"a": {"data": {"x": 5}}})
    assert response.status_code == 200, {n: (t["status"], t["error"]) for n, t in response.json()["tasks"].items()}
    session = response.json()
    assert session["status"] == "completed"
    assert session["result"] == {"d": 13}
    assert {name: t["status"] for name, t in session["tasks"].items()} == dict.fromkeys("abcd", "completed")


def test_parallel_delays_overlap(celery_workers, api, user):
    interaction = make_interaction(user, active=True, tasks={
        "left": {"type": "delay", "body": {"seconds": 1}},
        "right": {"type": "delay", "body": {"seconds": 1}},
        "join": {"type": "transform", "body": {"data": {}, "expression": "`1`"},
                 "execute_after": {"left": ["completed"], "right": ["completed"]}},
    })
    session = run(api, interaction).json()
    assert session["status"] == "completed"
    left, right, join = (session["tasks"][n] for n in ("left", "right", "join"))
    # Both delays ran at the same time: each started before the other finished.
    assert ts(left["started_at"]) < ts(right["finished_at"])
    assert ts(right["started_at"]) < ts(left["finished_at"])
    # The join started only after both finished.
    assert ts(join["started_at"]) >= max(ts(left["finished_at"]), ts(right["finished_at"]))
    assert session["duration_ms"] < 1900


def test_failure_handled_by_failed_edge(celery_workers, api, user):
    interaction = make_interaction(user, active=True, tasks={
        "boom": {"type": "fail", "body": {"message": "kaput"}},
        "ok": {"type": "transform", "body": {"data": 1, "expression": "@"}, "execute_after": {"boom": ["completed"]}},
        "handler": {"type": "response", "body": {"status_code": 502, "body": {"error": {"$ref": "boom.error"}}},
                    "execute_after": {"boom": ["failed"]}},
    })
    response = run(api, interaction)
    assert response.status_code == 502
    assert response.json() == {"error": "kaput"}


def test_unhandled_failure_fails_session(celery_workers, api, user):
    interaction = make_interaction(user, active=True, tasks={
        "boom": {"type": "fail", "body": {"message": "kaput"}},
        "after": {"type": "transform", "body": {"data": 1, "expression": "@"}, "execute_after": {"boom": ["completed"]}},
    })
    session = run(api, interaction).json()
    assert session["status"] == "failed"
    assert session["tasks"]["boom"]["status"] == "failed"
    assert session["tasks"]["after"]["status"] == "skipped"
    assert "kaput" in session["error"]


def test_output_the_database_cannot_store_fails_the_task(celery_workers, api, user):
    # A JMESPath JSON literal makes a string with a NUL character: valid JSON, refused by jsonb.
    interaction = make_interaction(user, active=True, tasks={
        "nul": {"type": "transform", "body": {"data": {}, "expression": '`"a\\u0000b"`'}},
    })
    session = run(api, interaction).json()
    assert session["status"] == "failed"
    assert session["tasks"]["nul"]["status"] == "failed"
    assert "cannot be stored" in session["tasks"]["nul"]["error"]


def test_input_the_database_cannot_store_is_a_400(api, user):
    interaction = make_interaction(user, active=True)
    response = api.post(f"/api/interactions/{interaction.id}/run/",
                        {"shape": {"data": {"items": ["a\u0000b"]}}}, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "unstorable_value"


def _transforms(preds: dict[str, list[str]]) -> dict:
    return {
        name: {"type": "transform", "body": {"data": index, "expression": "@"},
               **({"execute_after": {p: ["completed"] for p in after}} if after else {})}
        for index, (name, after) in enumerate(preds.items())
    }


@pytest.mark.parametrize(("preds", "canvas"), [
    ({"a": [], "b": ["a"], "c": ["a"], "d": []}, "group(chain(a, group(b, c)), d)"),
    # A chord whose header holds a chain ending in a group: Celery 5.7 may fire its body
    # before the group's tasks end; the executor holds e until its predecessors have ended.
    ({"a": [], "b": ["a"], "c": ["a"], "d": [], "e": ["b", "c", "d"]}, "chain(group(chain(a, group(b, c)), d), e)"),
    ({"a": [], "b": [], "c": ["a", "b"], "d": ["a", "b"], "e": [], "f": ["c", "d", "e"]},
     "chain(group(chain(group(a, b), group(c, d)), e), f)"),
])
def test_nested_shapes_finish_once_in_order(celery_workers, api, user, preds, canvas):
    interaction = make_interaction(user, active=True, tasks=_transforms(preds))
    plan = api.get(f"/api/interactions/{interaction.id}/plan/").json()
    assert (plan["canvas"], plan["extra_waits"]) == (canvas, [])

    session = run(api, interaction).json()
    assert session["status"] == "completed"
    finished = ts(session["finished_at"])
    for name, deps in preds.items():
        for dep in deps:
            assert ts(session["tasks"][name]["started_at"]) >= ts(session["tasks"][dep]["finished_at"])
    assert all(ts(t["finished_at"]) <= finished for t in session["tasks"].values())


def test_delays_hold_no_worker_process(celery_workers, api, user):
    # Twice as many waiting delays as the fleet has pool processes (2 workers × 2): were a
    # delay a sleep, at most four could be waiting at once.
    processes = celery_workers.count * celery_workers.concurrency
    interaction = make_interaction(user, active=True, tasks={"nap": {"type": "delay", "body": {"seconds": 1.5}}})
    ids = [run(api, interaction, wait=0).json()["id"] for _ in range(2 * processes)]
    naps = []
    for session_id in ids:
        for _ in range(200):
            session = api.get(f"/api/sessions/{session_id}/").json()
            if session["status"] not in ("queued", "running"):
                break
            time.sleep(0.05)
        assert session["status"] == "completed", session
        naps.append(session["tasks"]["nap"])
    # Every delay was waiting while every other one was: all of them at the same time.
    latest_start = max(ts(nap["started_at"]) for nap in naps)
    assert all(ts(nap["finished_at"]) > latest_start for nap in naps)


def test_plan_shows_what_runs_fused_and_what_goes_to_the_workers(api, user):
    interaction = make_interaction(user, tasks={
        "prepare": {"type": "transform", "body": {"data": {"id": 1}, "expression": "id"}},
        "left": {"type": "delay", "body": {"seconds": 0}, "execute_after": {"prepare": ["completed"]}},
        "right": {"type": "delay", "body": {"seconds": 0}, "execute_after": {"prepare": ["completed"]}},
        "join": {"type": "transform", "body": {"data": 1, "expression": "@"},
                 "execute_after": {"left": ["completed"], "right": ["completed"]}},
    })
    plan = api.get(f"/api/interactions/{interaction.id}/plan/").json()
    assert plan["canvas"] == "chain(prepare, group(left, right), join)"
    assert plan["celery"] == "group(left, right)"
    assert plan["fused"] == [
        {"task": "prepare", "after": [], "runs_in": "call"},
        {"task": "join", "after": ["left", "right"], "runs_in": "worker (fused)"},
    ]
