"""Chains run in one step: a worker step runs the next link of its chain itself (no broker hop),
each link still its own record (docs/execution.md, "Chains run in one step")."""
from __future__ import annotations

import time
import uuid
from datetime import datetime
from types import SimpleNamespace

import pytest
from django.test import override_settings

from interactions.compiled import compiled_version
from interactions.dispatch import plan_canvas
from interactions.models import Session
from interactions.tasks import ChainRest, run_task
from tests.conftest import make_interaction
from tests.http_server import LocalHttpServer


def fetch(url: str = "http://127.0.0.1:9/echo", *after: str, **extra) -> dict:
    return {"type": "http_request", "body": {"method": "GET", "url": url},
            "execute_after": {name: ["completed"] for name in after}, **extra}


def join(*after: str) -> dict:
    return {"type": "transform", "body": {"data": {}, "expression": "`1`"},
            "execute_after": {name: ["completed"] for name in after}}


def compiled(tasks: dict):
    return compiled_version(str(uuid.uuid4()), tasks)


# --- which links a step may run -----------------------------------------------------------------

def test_a_chain_of_requests_links_each_step_to_the_next():
    version = compiled({"a": fetch(), "b": fetch("u", "a"), "c": fetch("u", "b")})
    assert version.follows == {"a": "b", "b": "c"}
    assert version.hosts("c") == ["b", "a"] and version.hosts("a") == []


def test_links_skip_fused_tasks_between_them():
    # a → (transform) → b: the step that runs a runs the transform, then b.
    version = compiled({"a": fetch(), "t": join("a"), "b": fetch("u", "t")})
    assert version.follows == {"a": "b"}


def test_no_link_into_a_timer_another_queue_or_a_chord_part():
    version = compiled({
        "a": fetch(), "wait": {"type": "delay", "body": {"seconds": 1}, "execute_after": {"a": ["completed"]}},
        "b": fetch("u", "wait"),
        "code": {"type": "code", "body": {"code": "def main(data):\n    return 1\n"},
                 "execute_after": {"b": ["completed"]}},
    })
    assert version.follows == {}
    # x → y inside a branch whose end a chord waits for: y's own message counts the chord's parts.
    version = compiled({"x": fetch(), "y": fetch("u", "x"), "z": fetch(), "j": fetch("u", "y", "z")})
    assert "x" not in version.follows
    # The chord's body may run its own next link.
    version = compiled({"x": fetch(), "z": fetch(), "j": fetch("u", "x", "z"), "k": fetch("u", "j")})
    assert version.follows == {"j": "k"}


@pytest.mark.django_db
def test_the_plan_shows_the_chain_links(api, user):
    interaction = make_interaction(user, tasks={
        "a": fetch(), "t": join("a"), "b": fetch("u", "t"), "c": fetch("u", "b"), "d": fetch("u", "b"),
    })
    plan = api.get(f"/api/interactions/{interaction.id}/plan/").json()
    assert plan["celery"] == "chain(a, b, group(c, d))"
    assert plan["chain_links"] == [{"task": "b", "in_step_of": "a"}]


def test_a_linking_step_is_sent_with_the_chain_step_time():
    tasks = {"a": fetch(timeout=10), "b": fetch("u", "a", timeout=10), "c": fetch("u", "b", timeout=300)}
    version = compiled(tasks)
    with override_settings(JUNCTION_CHAIN_STEP_SECONDS=120, JUNCTION_HARD_TIMEOUT_GRACE=5):
        canvas = plan_canvas(session_id=str(uuid.uuid4()), version_id=str(uuid.uuid4()), compiled=version,
                             plan=version.worker_plan)
    limits = {sig.args[1]: (sig.options["soft_time_limit"], sig.options["time_limit"]) for sig in canvas.tasks}
    # a and b may run the links after them; c's own timeout is longer than the step time.
    assert limits == {"a": (120, 125), "b": (120, 125), "c": (300, 305)}


def chain_rest(session_id: str, links: list[str], soft: float = 120, **options) -> ChainRest:
    messages = [run_task.si(session_id, name, "v").set(**options) for name in reversed(links)]
    request = SimpleNamespace(chain=[dict(message) for message in messages], timelimit=(soft + 5, soft))
    return ChainRest(request, session_id)


def test_the_chain_rest_offers_only_a_plain_step_of_its_own_session():
    sid = str(uuid.uuid4())
    rest = chain_rest(sid, ["b", "c"])
    assert rest.peek() == "b"
    rest.take()
    assert rest.peek() == "c" and rest.taken == 1 and rest.current["args"][1] == "b"
    assert 119 < rest.remaining() <= 120
    assert chain_rest(str(uuid.uuid4()), ["b"]).peek() == "b"
    other = chain_rest(sid, ["b"])
    other.session_id = str(uuid.uuid4())
    assert other.peek() is None  # another session's message
    assert chain_rest(sid, ["b"], chord={"task": "x"}).peek() is None  # it counts a chord's parts
    timer = chain_rest(sid, [])
    timer.request.chain = [dict(run_task.si(sid, "wait", "v", due=time.time()))]
    assert timer.peek() is None  # a timer the call claimed
    assert chain_rest(sid, []).peek() is None


# --- on real workers -----------------------------------------------------------------------------

@pytest.fixture
def local_http():
    server = LocalHttpServer().start()
    yield server
    server.stop()


def run(api, interaction, body=None, wait=30):
    response = api.post(f"/api/interactions/{interaction.id}/run/", body or {}, format="json",
                        HTTP_PREFER=f"wait={wait}")
    return response.status_code, response.json()


def ts(value: str) -> datetime:
    return datetime.fromisoformat(value)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_chain_runs_in_one_step_each_link_its_own_record(celery_workers, api, user, local_http):
    url = local_http.url("/echo")
    interaction = make_interaction(user, active=True, tasks={
        "a": fetch(url), "t": {"type": "transform", "body": {"data": {"$ref": "a.status_code"}, "expression": "@"},
                               "execute_after": {"a": ["completed"]}},
        "b": fetch(url, "t"), "c": fetch(url, "b"), "d": fetch(url, "c"), "e": fetch(url, "d"),
    })
    status, session = run(api, interaction)
    assert status == 200, session
    tasks = session["tasks"]
    assert session["status"] == "completed", tasks
    assert {name: task["status"] for name, task in tasks.items()} == dict.fromkeys("atbcde", "completed")
    # One worker process ran every link, each claimed in the round trip that recorded the one
    # before it (so it started exactly when that one finished): no broker hop between them.
    assert len({task["worker"] for task in tasks.values()}) == 1
    for before, after in (("a", "t"), ("t", "b"), ("b", "c"), ("c", "d"), ("d", "e")):
        assert ts(tasks[after]["started_at"]) == ts(tasks[before]["finished_at"]), (before, after)
    assert all(task["attempts"] == 1 for task in tasks.values())
    assert len(local_http.requests) == 5


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_link_that_fails_is_handled_and_skips_its_chain(celery_workers, api, user, local_http):
    interaction = make_interaction(user, active=True, tasks={
        "a": fetch(local_http.url("/status/404")),
        "b": fetch(local_http.url("/echo"), "a"),
        "c": fetch(local_http.url("/echo"), "b"),
        "handled": {**fetch(local_http.url("/echo")), "execute_after": {"a": ["failed"]}},
    })
    status, session = run(api, interaction)
    assert status == 200, session
    assert {n: t["status"] for n, t in session["tasks"].items()} == {
        "a": "failed", "b": "skipped", "c": "skipped", "handled": "completed"}
    assert session["status"] == "completed"


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_retried_link_goes_back_to_its_own_message(celery_workers, api, user, local_http):
    # b fails with a transient 503 and has a retry: the step gives its claim back and sends b's
    # own message (with c after it); b's second attempt fails for good, c is skipped.
    interaction = make_interaction(user, active=True, tasks={
        "a": fetch(local_http.url("/echo")),
        "b": fetch(local_http.url("/status/503"), "a", retries=1),
        "c": fetch(local_http.url("/echo"), "b"),
        "after": {**fetch(local_http.url("/echo")), "execute_after": {"b": ["failed"]}},
    })
    status, session = run(api, interaction)
    assert status == 200, session
    tasks = session["tasks"]
    assert tasks["b"]["status"] == "failed" and tasks["b"]["attempts"] == 2, tasks["b"]
    assert tasks["c"]["status"] == "skipped" and tasks["after"]["status"] == "completed"
    assert [r.path for r in local_http.requests].count("/status/503") == 2


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_link_whose_timeout_does_not_fit_gets_its_own_message(celery_workers, api, user, local_http):
    url = local_http.url("/echo")
    # The step of a has JUNCTION_CHAIN_STEP_SECONDS (60 s): b's 200 s timeout does not fit, so b
    # is delivered by its own message (sent with 200 s), which then runs c itself.
    interaction = make_interaction(user, active=True, tasks={
        "a": fetch(url), "b": fetch(url, "a", timeout=200), "c": fetch(url, "b"),
    })
    status, session = run(api, interaction)
    assert status == 200, session
    tasks = session["tasks"]
    assert ts(tasks["b"]["started_at"]) > ts(tasks["a"]["finished_at"])
    assert ts(tasks["c"]["started_at"]) == ts(tasks["b"]["finished_at"])


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_cancel_stops_a_link_running_in_an_earlier_links_step(celery_workers, api, user, local_http):
    interaction = make_interaction(user, active=True, tasks={
        "a": fetch(local_http.url("/echo")), "b": fetch(local_http.url("/slow/20"), "a"),
    })
    response = api.post(f"/api/interactions/{interaction.id}/run/", {}, format="json")
    assert response.status_code == 202, response.json()
    session_id = response.json()["id"]
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if any(r.path == "/slow/20" for r in local_http.requests):
            break
        time.sleep(0.05)
    else:
        pytest.fail("b never started")
    session = Session.objects.get(pk=session_id)
    runs = {run.name: run for run in session.task_runs.all()}
    assert runs["b"].status == "running" and runs["b"].worker == runs["a"].worker
    from config.celery import app

    def active_steps() -> set[str]:
        return {task["id"] for tasks in (app.control.inspect(timeout=1.0).active() or {}).values() for task in tasks}

    # b runs in a's step: a's message is the one the worker is running.
    assert f"{session_id}.a" in active_steps()
    cancelled = api.post(f"/api/sessions/{session_id}/cancel/")
    assert cancelled.status_code == 200, cancelled.json()
    # Revoking a's message terminates the pool process long before b's 20 s request would end.
    deadline = time.monotonic() + 10
    while f"{session_id}.a" in active_steps():
        assert time.monotonic() < deadline, "the step running b was not stopped"
        time.sleep(0.2)
    b = Session.objects.get(pk=session_id).task_runs.get(name="b")
    assert b.status == "cancelled"
