"""The sessions API (SPEC §2.6): list and filters, detail, owner isolation, cancel, retry, events.

Listing and isolation need no execution: sessions are started through the service (nothing is
enqueued inside a test transaction) and moved to a status with the ORM. Cancel, retry and
events run on real Celery workers.
"""
from __future__ import annotations

import json
import time
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone

from interactions.models import Session
from interactions.sessions import session_start
from tests.conftest import finished, make_interaction

# One task that needs a worker: a session of it stays queued until the commit sends it (these
# sessions are never sent: the call is never committed in a test transaction).
ONE_STEP = {"one": {"type": "http_request", "body": {"url": "http://127.0.0.1:9/"}}}
# One task that a worker ends at once.
QUICK = {"one": {"type": "delay", "body": {"seconds": 0}}}
LIFECYCLE = ["pending", "running", "completed", "failed", "skipped", "cancelled"]


def started(user, interaction, *, status: str = "queued", created_at: datetime | None = None) -> Session:
    session, _ = session_start(user=user, interaction=interaction, data={})
    changes: dict[str, Any] = {"status": status}
    if created_at is not None:
        changes["created_at"] = created_at
    Session.objects.filter(pk=session.pk).update(**changes)
    return session


def ids(response) -> set[str]:
    assert response.status_code == 200, response.json()
    return {item["id"] for item in response.json()["results"]}


def until(api, session_id: str, check, seconds: float = 20) -> dict:
    """Poll the session until `check(session)` holds (bounded), and return it."""
    for _ in range(int(seconds / 0.05)):
        session = api.get(f"/api/sessions/{session_id}/").json()
        if check(session):
            return session
        time.sleep(0.05)
    raise AssertionError(f"session {session_id} never reached the expected state: {session}")


def run(api, interaction, body=None, **headers):
    return api.post(f"/api/interactions/{interaction.id}/run/", body or {}, format="json", **headers)


# --- list, filters, detail -------------------------------------------------------------------


@pytest.mark.django_db
def test_list_shows_the_users_sessions_newest_first(api, user, other_user):
    interaction = make_interaction(user, tasks=ONE_STEP, active=True)
    now = timezone.now()
    old = started(user, interaction, created_at=now - timedelta(hours=2))
    new = started(user, interaction, created_at=now - timedelta(hours=1))
    started(other_user, make_interaction(other_user, tasks=ONE_STEP, active=True))
    response = api.get("/api/sessions/")
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 2
    assert [item["id"] for item in body["results"]] == [str(new.id), str(old.id)]
    assert set(body["results"][0]["tasks"]) == {"one"}


@pytest.mark.django_db
def test_list_filters_by_interaction(api, user):
    first = make_interaction(user, tasks=ONE_STEP, active=True)
    second = make_interaction(user, tasks=ONE_STEP, active=True)
    a = started(user, first)
    b = started(user, second)
    assert ids(api.get("/api/sessions/", {"interaction": str(first.id)})) == {str(a.id)}
    assert ids(api.get("/api/sessions/", {"interaction": str(second.id)})) == {str(b.id)}


@pytest.mark.django_db
def test_list_filters_by_one_or_several_statuses(api, user):
    interaction = make_interaction(user, tasks=ONE_STEP, active=True)
    done = started(user, interaction, status="completed")
    failed = started(user, interaction, status="failed")
    cancelled = started(user, interaction, status="cancelled")
    assert ids(api.get("/api/sessions/", {"status": "completed"})) == {str(done.id)}
    assert ids(api.get("/api/sessions/?status=failed&status=cancelled")) == {str(failed.id), str(cancelled.id)}
    assert ids(api.get("/api/sessions/", {"status": "running"})) == set()


@pytest.mark.django_db
def test_an_unknown_status_filter_is_400(api, user):
    response = api.get("/api/sessions/", {"status": "sleeping"})
    assert response.status_code == 400
    assert "status" in response.json()["details"]


@pytest.mark.django_db
def test_list_filters_by_creation_time(api, user):
    interaction = make_interaction(user, tasks=ONE_STEP, active=True)
    now = timezone.now()
    monday = started(user, interaction, created_at=now - timedelta(days=3))
    tuesday = started(user, interaction, created_at=now - timedelta(days=2))
    wednesday = started(user, interaction, created_at=now - timedelta(days=1))
    after = (now - timedelta(days=2, hours=1)).isoformat()
    before = (now - timedelta(days=1, hours=1)).isoformat()
    assert ids(api.get("/api/sessions/", {"created_after": after})) == {str(tuesday.id), str(wednesday.id)}
    assert ids(api.get("/api/sessions/", {"created_before": before})) == {str(monday.id), str(tuesday.id)}
    assert ids(api.get("/api/sessions/", {"created_after": after, "created_before": before})) == {str(tuesday.id)}


@pytest.mark.django_db
def test_detail_renders_the_session_and_its_tasks(api, user):
    interaction = make_interaction(user, tasks=ONE_STEP, active=True)
    session = started(user, interaction)
    response = api.get(f"/api/sessions/{session.id}/")
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == str(session.id)
    assert body["interaction"] == str(interaction.id)
    assert body["version"] == 1
    assert body["status"] == "queued"
    assert body["tasks"] == {"one": {
        "status": "pending", "output": None, "error": None, "attempts": 0,
        "started_at": None, "finished_at": None, "duration_ms": None, "worker": None,
    }}


# --- isolation -------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("method, suffix", [
    ("get", ""), ("post", "cancel/"), ("post", "retry/"), ("get", "events/"),
])
def test_another_users_session_is_404(other_api, user, method, suffix):
    interaction = make_interaction(user, tasks=ONE_STEP, active=True)
    session = started(user, interaction, status="failed")
    accept = "text/event-stream" if suffix == "events/" else "application/json"
    response = getattr(other_api, method)(f"/api/sessions/{session.id}/{suffix}", HTTP_ACCEPT=accept)
    assert response.status_code == 404
    assert json.loads(response.content)["code"] == "not_found"
    assert Session.objects.get(pk=session.pk).status == "failed"  # untouched
    assert Session.objects.count() == 1  # no retry was started


@pytest.mark.django_db
def test_another_users_sessions_are_not_listed(other_api, user):
    started(user, make_interaction(user, tasks=ONE_STEP, active=True))
    assert other_api.get("/api/sessions/").json()["count"] == 0


# --- cancel ----------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_cancel_stops_a_running_session_and_pending_tasks_never_start(celery_workers, api, user):
    interaction = make_interaction(user, active=True, tasks={
        "quick": {"type": "transform", "body": {"data": 1, "expression": "@"}},
        "slow": {"type": "delay", "body": {"seconds": 2}},
        "after": {"type": "transform", "body": {"data": 2, "expression": "@"},
                  "execute_after": {"slow": ["completed"]}},
    })
    session_id = run(api, interaction).json()["id"]
    until(api, session_id, lambda s: s["tasks"]["slow"]["status"] == "running"
          and s["tasks"]["quick"]["status"] == "completed")

    response = api.post(f"/api/sessions/{session_id}/cancel/")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "cancelled"
    assert body["finished_at"] is not None
    statuses = {name: task["status"] for name, task in body["tasks"].items()}
    assert statuses == {"quick": "completed", "slow": "cancelled", "after": "cancelled"}

    # Long after the delay would have ended, nothing has moved: the downstream task never
    # started and the running one's late result was not recorded.
    time.sleep(3.5)
    later = api.get(f"/api/sessions/{session_id}/").json()
    assert later["status"] == "cancelled"
    assert later["tasks"]["after"]["status"] == "cancelled"
    assert later["tasks"]["after"]["started_at"] is None
    assert later["tasks"]["after"]["attempts"] == 0
    assert later["tasks"]["slow"]["status"] == "cancelled"
    assert later["tasks"]["slow"]["output"] is None
    assert later["tasks"]["quick"] == body["tasks"]["quick"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_cancelling_a_finished_session_is_409(celery_workers, api, user):
    interaction = make_interaction(user, tasks=QUICK, active=True)
    session = run(api, interaction, HTTP_PREFER="wait=20").json()
    assert session["status"] == "completed"
    response = api.post(f"/api/sessions/{session['id']}/cancel/")
    assert response.status_code == 409
    error = response.json()
    assert error["code"] == "session_finished"
    assert set(error) == {"code", "message", "details"}
    assert Session.objects.get(pk=session["id"]).status == "completed"


# --- retry -----------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_retry_reuses_completed_outputs_and_reruns_the_rest(celery_workers, api, user):
    interaction = make_interaction(user, active=True, tasks={
        "fetch": {"type": "transform", "body": {"data": {"id": 41}, "expression": "id"}},
        "side": {"type": "transform", "body": {"data": {"n": 2}, "expression": "n"}},
        "check": {"type": "fail", "body": {"message": {"$template": "order {{ fetch }} rejected"}},
                  "execute_after": {"fetch": ["completed"]}},
        "ship": {"type": "transform", "body": {"data": 1, "expression": "@"},
                 "execute_after": {"check": ["completed"]}},
    })
    original = run(api, interaction, HTTP_PREFER="wait=20").json()
    assert original["status"] == "failed"
    assert {n: t["status"] for n, t in original["tasks"].items()} == {
        "fetch": "completed", "side": "completed", "check": "failed", "ship": "skipped",
    }

    response = api.post(f"/api/sessions/{original['id']}/retry/")
    assert response.status_code == 202
    retry_id = response.json()["id"]
    assert retry_id != original["id"]
    assert response["Location"] == f"/api/sessions/{retry_id}/"
    assert response.json()["version"] == original["version"]
    assert response.json()["input"] == original["input"]

    retry = finished(api, retry_id)
    assert retry["status"] == "failed"
    for name in ("fetch", "side"):  # reused, not run again
        assert retry["tasks"][name] == original["tasks"][name]
        assert retry["tasks"][name]["attempts"] == 1
    check = retry["tasks"]["check"]
    assert check["status"] == "failed"
    assert check["error"] == "order 41 rejected"  # it read the reused output of fetch
    assert check["attempts"] == 1
    assert datetime.fromisoformat(check["started_at"]) > datetime.fromisoformat(original["tasks"]["check"]["finished_at"])
    assert retry["tasks"]["ship"]["status"] == "skipped"
    assert retry["result"] == {"side": 2}

    # The original session is unchanged, and there are exactly two.
    assert api.get(f"/api/sessions/{original['id']}/").json()["tasks"] == original["tasks"]
    assert Session.objects.filter(interaction=interaction).count() == 2


# --- events ----------------------------------------------------------------------------------


def parse_sse(text: str) -> list[tuple[str, dict]]:
    events = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if line)
        events.append((fields["event"], json.loads(fields["data"])))
    return events


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_events_stream_each_task_status_change_then_the_session(celery_workers, api, user):
    interaction = make_interaction(user, active=True, tasks={
        "nap": {"type": "delay", "body": {"seconds": 1}},
        "after": {"type": "transform", "body": {"data": {"$ref": "nap"}, "expression": "@"},
                  "execute_after": {"nap": ["completed"]}},
        "never": {"type": "transform", "body": {"data": 1, "expression": "@"},
                  "execute_after": {"nap": ["failed"]}},
    })
    session_id = run(api, interaction).json()["id"]
    response = api.get(f"/api/sessions/{session_id}/events/", HTTP_ACCEPT="text/event-stream")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/event-stream")
    events = parse_sse(b"".join(response.streaming_content).decode())

    kinds = [kind for kind, _ in events]
    assert kinds[-1] == "session" and kinds.count("session") == 1
    final = events[-1][1]
    assert final["id"] == session_id
    assert final["status"] == "completed"

    per_task: dict[str, list[str]] = {}
    for kind, data in events[:-1]:
        assert kind == "task"
        per_task.setdefault(data["name"], []).append(data["status"])
    assert set(per_task) == {"nap", "after", "never"}
    for name, statuses in per_task.items():
        # One event per change: no repeats, in lifecycle order, ending where the task ended.
        assert all(a != b for a, b in zip(statuses, statuses[1:])), (name, statuses)
        assert [LIFECYCLE.index(s) for s in statuses] == sorted(LIFECYCLE.index(s) for s in statuses)
        assert statuses[-1] == final["tasks"][name]["status"]
    # The 1 s delay was seen running; its dependants were seen waiting before they ended.
    assert "running" in per_task["nap"]
    assert per_task["after"][0] == "pending" and per_task["after"][-1] == "completed"
    assert per_task["never"] == ["pending", "skipped"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_events_of_a_finished_session_give_each_tasks_final_status_then_the_session(celery_workers, api, user):
    interaction = make_interaction(user, tasks=QUICK, active=True)
    session = run(api, interaction, HTTP_PREFER="wait=20").json()
    response = api.get(f"/api/sessions/{session['id']}/events/", HTTP_ACCEPT="text/event-stream")
    events = parse_sse(b"".join(response.streaming_content).decode())
    assert [(kind, data.get("name"), data["status"]) for kind, data in events] == [
        ("task", "one", "completed"), ("session", None, "completed"),
    ]
    assert events[-1][1] == api.get(f"/api/sessions/{session['id']}/").json()
