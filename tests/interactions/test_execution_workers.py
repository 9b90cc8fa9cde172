"""Sessions run on real Celery worker processes (Redis broker, PostgreSQL)."""
from __future__ import annotations

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
    assert response.status_code == 200, response.json()
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


def test_a_chain_ending_in_a_group_inside_a_group_finishes_once_in_order(celery_workers, api, user):
    # Exactly planned, this graph is group(chain(a, group(b, c)), d): a chord header holding a
    # chain that ends in a group, which Celery 5.7 miscounts (the session never finished).
    # The compiler runs b and c in turn instead, and says so in the plan.
    tasks = {
        "a": {"type": "transform", "body": {"data": 1, "expression": "@"}},
        "b": {"type": "transform", "body": {"data": 2, "expression": "@"}, "execute_after": {"a": ["completed"]}},
        "c": {"type": "transform", "body": {"data": 3, "expression": "@"}, "execute_after": {"a": ["completed"]}},
        "d": {"type": "transform", "body": {"data": 4, "expression": "@"}},
    }
    interaction = make_interaction(user, active=True, tasks=tasks)
    plan = api.get(f"/api/interactions/{interaction.id}/plan/").json()
    assert plan["canvas"] == "group(chain(a, b, c), d)"
    assert plan["extra_waits"] == [{"task": "c", "waits_for": "b"}]

    session = run(api, interaction).json()
    assert session["status"] == "completed"
    assert session["result"] == {"b": 2, "c": 3, "d": 4}
    finished = ts(session["finished_at"])
    for name, deps in {"b": ["a"], "c": ["a", "b"]}.items():
        for dep in deps:
            assert ts(session["tasks"][name]["started_at"]) >= ts(session["tasks"][dep]["finished_at"])
    assert all(ts(t["finished_at"]) <= finished for t in session["tasks"].values())
