"""`POST /api/interactions/{id}/run/` (SPEC §2.5): answers, waiting, input checks, idempotency.

Runs that execute go to real Celery workers (Redis, PostgreSQL); checks that reject a call
before anything is written need no worker.
"""
from __future__ import annotations

import socket

import pytest
from celery.result import AsyncResult
from django.db import transaction

from config.celery import app
from interactions.models import Session, TaskRun
from interactions.sessions import session_start
from tests.conftest import finished, make_interaction

SESSION_KEYS = {
    "id", "interaction", "end_user", "version", "status", "input", "result", "error",
    "created_at", "started_at", "finished_at", "duration_ms", "tasks",
}
TASK_KEYS = {"status", "output", "error", "attempts", "started_at", "finished_at", "duration_ms", "worker"}

SHAPE = {
    "shape": {"type": "transform", "body": {"data": None, "expression": "items[0]"}},
    "double": {"type": "transform", "body": {"data": {"$ref": "shape"}, "expression": "[@, @]"},
               "execute_after": {"shape": ["completed"]}},
}
SHAPE_INPUT = {"shape": {"data": {"items": [7, 8]}}}
# SHAPE behind a step that needs a worker: the call answers before the session ends.
STEPPED = {
    "pause": {"type": "delay", "body": {"seconds": 0}},
    "shape": {**SHAPE["shape"], "execute_after": {"pause": ["completed"]}},
    "double": SHAPE["double"],
}


def run(api, interaction, body=None, **headers):
    return api.post(f"/api/interactions/{interaction.id}/run/", body if body is not None else {},
                    format="json", **headers)


# --- answers ---------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_default_is_202_with_location_and_the_session(celery_workers, api, user):
    interaction = make_interaction(user, tasks=STEPPED, active=True)
    response = run(api, interaction, SHAPE_INPUT)
    assert response.status_code == 202
    session = response.json()
    assert response["Location"] == f"/api/sessions/{session['id']}/"
    assert set(session) == SESSION_KEYS
    assert session["interaction"] == str(interaction.id)
    assert session["version"] == 1
    assert session["status"] in ("queued", "running")
    assert session["input"] == SHAPE_INPUT
    assert set(session["tasks"]) == {"pause", "shape", "double"}
    assert all(set(task) == TASK_KEYS for task in session["tasks"].values())

    done = finished(api, session["id"])
    assert done["status"] == "completed"
    assert done["result"] == {"double": [7, 7]}
    assert done["error"] is None
    assert done["started_at"] and done["finished_at"] and done["duration_ms"] >= 0
    shape = done["tasks"]["shape"]
    assert shape["status"] == "completed" and shape["output"] == 7 and shape["attempts"] == 1
    assert shape["error"] is None and shape["started_at"] and shape["finished_at"]
    # Where each ran: the worker (its Celery node name) that ended the pause ran the fused
    # tasks it made ready in the same step.
    workers = {name: task["worker"] for name, task in done["tasks"].items()}
    assert workers["pause"].startswith("test") and "@" in workers["pause"], workers
    assert workers["shape"] == workers["double"] == workers["pause"]


@pytest.mark.django_db
def test_a_session_of_pure_tasks_ends_in_the_call_without_a_worker(api, user):
    # No worker runs here and nothing is sent (a test transaction never commits): the call
    # itself runs every task and stores the session already finished.
    interaction = make_interaction(user, tasks=SHAPE, active=True)
    response = run(api, interaction, SHAPE_INPUT)
    assert response.status_code == 202
    session = response.json()
    assert session["status"] == "completed"
    assert session["result"] == {"double": [7, 7]}
    for name in ("shape", "double"):
        task = session["tasks"][name]
        assert task["status"] == "completed" and task["attempts"] == 1 and task["error"] is None
        assert task["started_at"] <= task["finished_at"]
    assert session["tasks"]["shape"]["finished_at"] <= session["tasks"]["double"]["started_at"]
    # They ran in the process that took the call.
    assert {task["worker"] for task in session["tasks"].values()} == {f"api@{socket.gethostname()}"}
    assert api.get(f"/api/sessions/{session['id']}/").json() == session
    assert TaskRun.objects.filter(session_id=session["id"], status="completed").count() == 2


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
@pytest.mark.parametrize("how", ["header", "query"])
def test_wait_returns_200_with_the_finished_session(how, celery_workers, api, user):
    interaction = make_interaction(user, tasks=SHAPE, active=True)
    if how == "header":
        response = run(api, interaction, SHAPE_INPUT, HTTP_PREFER="wait=20")
    else:
        response = api.post(f"/api/interactions/{interaction.id}/run/?wait=20", SHAPE_INPUT, format="json")
    assert response.status_code == 200, response.json()
    session = response.json()
    assert set(session) == SESSION_KEYS
    assert response["Location"] == f"/api/sessions/{session['id']}/"
    assert session["status"] == "completed"
    assert session["result"] == {"double": [7, 7]}
    assert {name: task["status"] for name, task in session["tasks"].items()} == {
        "shape": "completed", "double": "completed",
    }


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_a_response_task_is_the_http_response_of_a_waited_call(celery_workers, api, user):
    interaction = make_interaction(user, active=True, tasks={
        "shape": SHAPE["shape"],
        "reply": {"type": "response", "execute_after": {"shape": ["completed"]}, "body": {
            "status_code": 201,
            "headers": {"X-Order": "42", "Cache-Control": "no-store"},
            "body": {"first": {"$ref": "shape"}, "note": {"$template": "got {{ shape }}"}},
        }},
    })
    response = run(api, interaction, SHAPE_INPUT, HTTP_PREFER="wait=20")
    assert response.status_code == 201
    assert response["X-Order"] == "42"
    assert response["Cache-Control"] == "no-store"
    assert response.json() == {"first": 7, "note": "got 7"}
    # The session itself is still there, with the response's body as its result.
    session = Session.objects.get(pk=response["Location"].split("/")[-2])
    assert session.status == Session.Status.COMPLETED
    assert session.result == {"first": 7, "note": "got 7"}


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_a_response_task_does_not_replace_the_202_of_an_unwaited_call(celery_workers, api, user):
    interaction = make_interaction(user, active=True, tasks={
        "reply": {"type": "response", "body": {"status_code": 201, "body": "hello"}},
    })
    response = run(api, interaction)
    assert response.status_code == 202
    assert set(response.json()) == SESSION_KEYS
    assert finished(api, response.json()["id"])["result"] == "hello"


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_a_wait_shorter_than_the_work_gives_202_and_the_session_completes_later(celery_workers, api, user):
    interaction = make_interaction(user, active=True, tasks={
        "nap": {"type": "delay", "body": {"seconds": 2}},
        "after": {"type": "transform", "body": {"data": {"ok": True}, "expression": "ok"},
                  "execute_after": {"nap": ["completed"]}},
    })
    response = run(api, interaction, HTTP_PREFER="wait=0.5")
    assert response.status_code == 202
    session = response.json()
    assert session["status"] in ("queued", "running")
    assert session["tasks"]["after"]["status"] == "pending"
    assert response["Location"] == f"/api/sessions/{session['id']}/"

    done = finished(api, session["id"])
    assert done["status"] == "completed"
    assert done["result"] == {"after": True}


# --- rejected calls --------------------------------------------------------------------------


@pytest.mark.django_db
def test_an_inactive_interaction_is_409(api, user):
    interaction = make_interaction(user, tasks=SHAPE, active=False)
    response = run(api, interaction, SHAPE_INPUT, HTTP_PREFER="wait=5")
    assert response.status_code == 409
    body = response.json()
    assert set(body) == {"code", "message", "details"}
    assert body["code"] == "interaction_inactive"
    assert "not active" in body["message"]
    assert Session.objects.count() == 0


BLANKS = {
    "shape": {"type": "transform", "body": {"data": None, "expression": "@"}},
    "nap": {"type": "delay", "body": {"seconds": None}},
}


@pytest.mark.django_db
@pytest.mark.parametrize("body, field", [
    ({"nap": {"seconds": 0}}, "shape.data"),                                    # missing
    ({"shape": {"data": 1}, "nap": {"seconds": None}}, "nap.seconds"),          # null is missing
    ({"shape": {"data": 1, "colour": "red"}, "nap": {"seconds": 0}}, "shape.colour"),  # unknown field
    ({"shape": {"data": 1}, "nap": {"seconds": "soon"}}, "nap.seconds"),        # mistyped
    ({"shape": {"data": 1}, "nap": {"seconds": -1}}, "nap.seconds"),            # out of range
])
def test_a_bad_blank_is_400_naming_task_and_field_and_creates_nothing(api, user, body, field):
    interaction = make_interaction(user, tasks=BLANKS, active=True)
    before = (Session.objects.count(), TaskRun.objects.count())
    response = run(api, interaction, body, HTTP_PREFER="wait=5")
    assert response.status_code == 400
    error = response.json()
    assert error["code"] == "validation_error"
    assert field in error["details"], error
    assert (Session.objects.count(), TaskRun.objects.count()) == before


@pytest.mark.django_db
def test_input_for_an_unknown_task_is_400_naming_it(api, user):
    interaction = make_interaction(user, tasks=BLANKS, active=True)
    response = run(api, interaction, {"shape": {"data": 1}, "nap": {"seconds": 0}, "ghost": {"x": 1}})
    assert response.status_code == 400
    error = response.json()
    assert set(error["details"]) == {"ghost"}
    assert error["details"]["ghost"] == ["Unknown task 'ghost': the interaction has no task of that name."]
    assert "ghost" in error["message"]
    assert Session.objects.count() == 0


@pytest.mark.django_db
def test_input_for_a_task_without_blanks_is_400_naming_it(api, user):
    tasks = {**BLANKS, "fixed": {"type": "transform", "body": {"data": 1, "expression": "@"}}}
    interaction = make_interaction(user, tasks=tasks, active=True)
    response = run(api, interaction, {"shape": {"data": 1}, "nap": {"seconds": 0}, "fixed": {"data": 2}})
    assert response.status_code == 400
    assert response.json()["details"] == {"fixed": ["Task 'fixed' has no blank fields to fill in."]}
    assert Session.objects.count() == 0


# --- idempotency -----------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_the_same_idempotency_key_and_body_return_the_same_session_and_run_once(celery_workers, api, user):
    interaction = make_interaction(user, tasks=SHAPE, active=True)
    first = run(api, interaction, SHAPE_INPUT, HTTP_PREFER="wait=20", HTTP_IDEMPOTENCY_KEY="order-1")
    second = run(api, interaction, SHAPE_INPUT, HTTP_PREFER="wait=20", HTTP_IDEMPOTENCY_KEY="order-1")
    assert first.status_code == second.status_code == 200
    assert first.json()["id"] == second.json()["id"]
    assert Session.objects.filter(interaction=interaction).count() == 1
    runs = TaskRun.objects.filter(session_id=first.json()["id"])
    assert sorted(runs.values_list("name", "attempts")) == [("double", 1), ("shape", 1)]
    assert second.json()["tasks"] == first.json()["tasks"]


@pytest.mark.django_db
def test_the_same_idempotency_key_with_another_body_is_422(api, user):
    interaction = make_interaction(user, tasks=SHAPE, active=True)
    first = run(api, interaction, SHAPE_INPUT, HTTP_IDEMPOTENCY_KEY="order-2")
    assert first.status_code == 202
    other = run(api, interaction, {"shape": {"data": {"items": [1]}}}, HTTP_IDEMPOTENCY_KEY="order-2")
    assert other.status_code == 422
    error = other.json()
    assert error["code"] == "idempotency_conflict"
    assert set(error) == {"code", "message", "details"}
    assert Session.objects.count() == 1


@pytest.mark.django_db
def test_a_replayed_idempotent_call_says_it_was_replayed(api, user):
    interaction = make_interaction(user, tasks=SHAPE, active=True)
    first = run(api, interaction, SHAPE_INPUT, HTTP_IDEMPOTENCY_KEY="order-3")
    second = run(api, interaction, SHAPE_INPUT, HTTP_IDEMPOTENCY_KEY="order-3")
    assert first.status_code == second.status_code == 202
    assert "Idempotent-Replayed" not in first.headers
    assert second.headers["Idempotent-Replayed"] == "true"
    assert second.json()["id"] == first.json()["id"]
    assert second.headers["Location"] == first.headers["Location"]


@pytest.mark.django_db
def test_a_call_without_a_key_is_never_a_replay(api, user):
    interaction = make_interaction(user, tasks=SHAPE, active=True)
    for _ in range(2):
        assert "Idempotent-Replayed" not in run(api, interaction, SHAPE_INPUT).headers


@pytest.mark.django_db
def test_another_idempotency_key_starts_another_session(api, user):
    interaction = make_interaction(user, tasks=SHAPE, active=True)
    first = run(api, interaction, SHAPE_INPUT, HTTP_IDEMPOTENCY_KEY="k-1")
    second = run(api, interaction, SHAPE_INPUT, HTTP_IDEMPOTENCY_KEY="k-2")
    assert first.json()["id"] != second.json()["id"]
    assert Session.objects.count() == 2


# --- durability: enqueue on commit -----------------------------------------------------------


class Rollback(Exception):
    pass


@pytest.mark.django_db(transaction=True)
def test_a_session_started_in_a_rolled_back_transaction_enqueues_nothing(default_queue_unconsumed, user):
    broker = default_queue_unconsumed
    interaction = make_interaction(user, tasks=STEPPED, active=True)
    with pytest.raises(Rollback):
        with transaction.atomic():
            session, created = session_start(user=user, interaction=interaction, data=SHAPE_INPUT)
            assert created
            assert TaskRun.objects.filter(session=session).count() == 3  # written, then rolled back
            raise Rollback
    assert not Session.objects.filter(pk=session.pk).exists()
    assert TaskRun.objects.count() == 0
    assert broker.llen("default") == 0
    assert AsyncResult(str(session.id), app=app).state == "PENDING"  # no finishing task ever ran

    # The check can see a dispatch: the same call, committed, does put work on the queue.
    committed, _ = session_start(user=user, interaction=interaction, data=SHAPE_INPUT)
    assert broker.llen("default") > 0
    Session.objects.filter(pk=committed.pk).delete()


@pytest.mark.django_db
def test_an_idempotency_key_longer_than_the_column_is_a_400_naming_the_header(api, user):
    interaction = make_interaction(user, tasks=SHAPE, active=True)
    response = run(api, interaction, SHAPE_INPUT, HTTP_IDEMPOTENCY_KEY="k" * 256)
    assert response.status_code == 400
    assert list(response.json()["details"]) == ["Idempotency-Key"]
    assert not Session.objects.filter(interaction=interaction).exists()
