"""A session's task messages: prepared once per plan, they are what Celery's canvas would send.

`dispatch_plan` sends the messages Celery recorded for the plan, with the session's id and
fresh ids where Celery makes them up (interactions/dispatch.py, `Prepared`). Compared here with
Celery's own `apply_async` of the same canvas, both recorded at Celery's task sender
(`config.celery.recorded_messages`): the same messages, the same routing, in the same order.
The last test runs prepared plans on real workers.
"""
from __future__ import annotations

import json
import re
import uuid
from datetime import datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from config.celery import recorded_messages
from interactions.compiled import compiled_version
from interactions.dispatch import dispatch_plan, plan_canvas, prepared_plan
from tests.conftest import make_interaction
from tests.http_server import LocalHttpServer

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def fetch(*after: str) -> dict:
    task: dict = {"type": "http_request", "body": {"method": "GET", "url": "http://127.0.0.1:9/echo"}}
    if after:
        task["execute_after"] = {name: ["completed"] for name in after}
    return task


def join(*after: str) -> dict:
    return {"type": "transform", "body": {"data": {}, "expression": "`1`"},
            "execute_after": {name: ["completed"] for name in after}}


def delay() -> dict:
    return {"type": "delay", "body": {"seconds": 1}}


SHAPES = {
    "one step": {"a": fetch()},
    "chain": {"a": fetch(), "b": fetch("a"), "c": fetch("b")},
    "parallel roots, fused join": {"a": fetch(), "b": fetch(), "c": join("a", "b")},
    "fan-out": {"src": fetch(), **{f"m{i}": fetch("src") for i in range(5)}, "sink": join(*(f"m{i}" for i in range(5)))},
    "parallel chains": {"a": fetch(), "b": fetch("a"), "c": fetch(), "d": fetch("c")},
    "chain into parallel chains": {"a": fetch(), "b": fetch("a"), "c": fetch("b"), "d": fetch("a"), "e": fetch("d")},
    # A chord (a step after a parallel): sent through Celery's canvas on every call.
    "chord": {"a": fetch(), "b": fetch(), "c": fetch("a", "b")},
}


def wire(recorded, *kept: str) -> str:
    """The recorded messages as they are published (JSON) and routed, each id Celery made up
    replaced by its order of appearance; `kept` ids (the session's, the version's…) stay."""
    text = json.dumps([[r.name, *r.message, sorted((k, repr(v)) for k, v in r.options.items())] for r in recorded])
    made_up: dict[str, int] = {}
    return UUID.sub(lambda m: m.group() if m.group() in kept else f"<id {made_up.setdefault(m.group(), len(made_up))}>",
                    text)


def sent_by_both(tasks: dict, timers: dict | None = None, version_id: str | None = None) -> tuple[str, str, int]:
    """(what Celery's canvas sends, what dispatch_plan sends, how many messages) for a new session."""
    version_id = version_id or str(uuid.uuid4())
    session_id = str(uuid.uuid4())
    user_id = str(uuid.uuid5(uuid.NAMESPACE_OID, version_id))  # one owner per version, as in the API
    compiled = compiled_version(version_id, tasks)
    arguments: dict[str, Any] = dict(session_id=session_id, version_id=version_id, compiled=compiled,
                                     plan=compiled.worker_plan, timers=timers, user_id=user_id)
    with recorded_messages() as by_celery:
        plan_canvas(**arguments).apply_async()
    with recorded_messages() as by_dispatch:
        dispatch_plan(**arguments)
    kept = (version_id, user_id, session_id)
    return wire(by_celery, *kept), wire(by_dispatch, *kept), len(by_celery)


@pytest.mark.parametrize("shape", SHAPES)
def test_dispatch_sends_what_the_canvas_sends(shape):
    by_celery, by_dispatch, count = sent_by_both(SHAPES[shape])
    assert count >= 1
    assert by_dispatch == by_celery


@pytest.mark.parametrize("shape", SHAPES)
def test_every_plan_but_a_chord_is_prepared(shape):
    version_id = str(uuid.uuid4())
    compiled = compiled_version(version_id, SHAPES[shape])
    assert compiled.worker_plan is not None
    prepared = prepared_plan(compiled=compiled, version_id=version_id, plan=compiled.worker_plan, user_id=None)
    # A chord's header is set up in the result backend as it is sent: Celery's canvas each time.
    assert (prepared is None) == (shape == "chord")


def test_later_sessions_of_a_version_use_what_the_first_prepared():
    version_id = str(uuid.uuid4())
    for _ in range(3):
        by_celery, by_dispatch, _ = sent_by_both(SHAPES["chain into parallel chains"], version_id=version_id)
        assert by_dispatch == by_celery


def test_timers_claimed_by_the_call_go_through_the_canvas():
    tasks = {"wait": delay(), "after": fetch("wait")}
    by_celery, by_dispatch, _ = sent_by_both(tasks, timers={"wait": (1e10, None)})
    # A countdown is relative to the moment of sending: compare without the eta.
    eta = re.compile(r'"eta": "[^"]+"')
    assert eta.sub("", by_dispatch) == eta.sub("", by_celery)


def test_each_session_gets_its_own_celery_ids():
    tasks = SHAPES["parallel roots, fused join"]
    version_id = str(uuid.uuid4())
    compiled = compiled_version(version_id, tasks)
    groups = []
    for session_id in (str(uuid.uuid4()), str(uuid.uuid4())):
        with recorded_messages() as recorded:
            dispatch_plan(session_id=session_id, version_id=version_id, compiled=compiled, plan=compiled.worker_plan)
        assert [r.message.headers["id"] for r in recorded] == [f"{session_id}.a", f"{session_id}.b"]
        assert [r.message.body[0][0] for r in recorded] == [session_id, session_id]
        groups.append({r.message.headers["group"] for r in recorded})
    # One group per session, never the same twice.
    assert [len(group) for group in groups] == [1, 1]
    assert groups[0] != groups[1]


@st.composite
def dags(draw) -> dict:
    """2-12 tasks, each an `http_request` (a step on a worker) or a `transform` (fused), each
    after 0-3 earlier ones."""
    tasks: dict = {}
    for index in range(draw(st.integers(min_value=2, max_value=12))):
        earlier = list(tasks)
        after = draw(st.lists(st.sampled_from(earlier), unique=True, max_size=min(3, len(earlier)))) if earlier else []
        tasks[f"t{index}"] = fetch(*after) if draw(st.booleans()) or not after else join(*after)
    return tasks


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tasks=dags())
def test_any_plan_is_sent_as_the_canvas_would_send_it(tasks):
    if compiled_version(str(uuid.uuid4()), tasks).worker_plan is None:
        return
    by_celery, by_dispatch, _ = sent_by_both(tasks)
    assert by_dispatch == by_celery


@pytest.fixture
def local_http():
    server = LocalHttpServer().start()
    yield server
    server.stop()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_prepared_plans_run_on_real_workers(celery_workers, api, user, local_http):
    # Parallel roots, a chain and a fan-out, all sent as prepared messages; twice, so that the
    # second session uses what the first one prepared.
    def get(*after: str) -> dict:
        task = fetch(*after)
        task["body"]["url"] = local_http.url("/echo")
        return task

    interaction = make_interaction(user, active=True, tasks={
        "a": get(), "b": get(), "c": get("a"), "d": get("c"), "e": get("c"), "join": join("b", "d", "e"),
    })
    for _ in range(2):
        response = api.post(f"/api/interactions/{interaction.id}/run/", {}, format="json", HTTP_PREFER="wait=30")
        session = response.json()
        assert response.status_code == 200, session
        assert {name: task["status"] for name, task in session["tasks"].items()} == dict.fromkeys(
            ("a", "b", "c", "d", "e", "join"), "completed")
        times = {name: (datetime.fromisoformat(task["started_at"]), datetime.fromisoformat(task["finished_at"]))
                 for name, task in session["tasks"].items()}
        for name, before in (("c", "a"), ("d", "c"), ("e", "c"), ("join", "b"), ("join", "d"), ("join", "e")):
            assert times[name][0] >= times[before][1]
