"""`Prefer: wait` answered from the published end (interactions/waiting.py, interactions/events.py).

The sessions here stay queued (nobody consumes the `default` queue): what ends them is either
the real publisher with a payload of the test's making — which the database does not hold, so
an answer equal to it cannot have been read from the session — or a real cancel.
"""
from __future__ import annotations

import asyncio
import threading
import time

import pytest

from interactions import events, selectors
from interactions.models import Session
from interactions.sessions import session_cancel, session_start
from tests.asgi_server import AsgiServer, request
from tests.conftest import make_interaction

# A step only a worker runs (not a timer: the call itself would claim a delay); these tests
# publish the end themselves, or see it time out.
STEP = {"type": "http_request", "body": {"url": "http://127.0.0.1:9/"}}
NAP = {"nap": STEP}
REPLY = {
    "nap": STEP,
    "reply": {"type": "response", "execute_after": {"nap": ["completed"]},
              "body": {"status_code": 201, "body": {"ok": True}}},
}


def run(api, interaction, **headers):
    return api.post(f"/api/interactions/{interaction.id}/run/", {}, format="json", **headers)


def ended(session: Session, **changes) -> dict:
    """The session's representation as a publisher would send it at its end, with `changes`."""
    data = selectors.session_data(selectors.session_by_id(session_id=session.pk))
    return {**data, "status": "completed", "finished_at": data["created_at"], **changes}


def publish_when_created(interaction, make_data, delay: float = 0.3) -> threading.Thread:
    """Publish the end of the interaction's first session, once it exists (from a thread)."""
    def publish():
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            session = Session.objects.filter(interaction=interaction).first()
            if session is not None:
                time.sleep(delay)  # let the caller subscribe (an earlier end is covered too)
                events.publish_session_end(session.pk, make_data(session))
                return
            time.sleep(0.02)

    thread = threading.Thread(target=publish)
    thread.start()
    return thread


@pytest.mark.django_db(transaction=True)
def test_a_waited_call_is_answered_with_the_published_end_not_a_reread(default_queue_unconsumed, api, user):
    interaction = make_interaction(user, tasks=NAP, active=True)
    publisher = publish_when_created(interaction, lambda session: ended(session, result={"from": "payload"}))
    response = run(api, interaction, HTTP_PREFER="wait=20")
    publisher.join()
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "completed" and body["result"] == {"from": "payload"}
    assert response["Location"] == f"/api/sessions/{body['id']}/"
    assert response["Preference-Applied"] == "wait=20"
    assert Session.objects.get(pk=body["id"]).status == Session.Status.QUEUED  # the database says otherwise


@pytest.mark.django_db(transaction=True)
def test_the_reply_of_a_waited_call_comes_from_the_published_response_task(default_queue_unconsumed, api, user):
    interaction = make_interaction(user, tasks=REPLY, active=True)

    def with_reply(session):
        data = ended(session)
        data["tasks"]["reply"] = {**data["tasks"]["reply"], "status": "completed", "output": {
            "status_code": 201, "headers": {"X-From": "payload"}, "body": {"ok": "published"},
        }}
        return data

    publisher = publish_when_created(interaction, with_reply)
    response = run(api, interaction, HTTP_PREFER="wait=20")
    publisher.join()
    assert response.status_code == 201
    assert response["X-From"] == "payload"
    assert response.json() == {"ok": "published"}


@pytest.mark.django_db(transaction=True)
def test_an_end_published_before_the_caller_waits_is_still_seen(default_queue_unconsumed, api, user):
    interaction = make_interaction(user, tasks=NAP, active=True)
    session, _ = session_start(user=user, interaction=interaction, data={}, idempotency_key="early")
    events.publish_session_end(session.pk, ended(session, result="early"))
    # The same key returns the same (still queued) session, whose end was already published.
    response = run(api, interaction, HTTP_PREFER="wait=20", HTTP_IDEMPOTENCY_KEY="early")
    assert response.status_code == 200
    assert response.json()["id"] == str(session.id)
    assert response.json()["result"] == "early"


@pytest.mark.django_db(transaction=True)
def test_a_wait_that_runs_out_is_202_with_the_session_as_it_is(default_queue_unconsumed, api, user):
    interaction = make_interaction(user, tasks=NAP, active=True)
    response = run(api, interaction, HTTP_PREFER="wait=0.5")
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "queued"
    assert body["tasks"]["nap"]["status"] == "pending"
    assert response["Location"] == f"/api/sessions/{body['id']}/"
    assert response["Preference-Applied"] == "wait=0.5"


@pytest.mark.django_db(transaction=True)
def test_a_session_ended_by_a_cancel_answers_its_waiting_caller(default_queue_unconsumed, api, user):
    interaction = make_interaction(user, tasks=NAP, active=True)

    def cancel_when_created():
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            session = Session.objects.filter(interaction=interaction).first()
            if session is not None:
                time.sleep(0.3)
                session_cancel(session=session)
                return
            time.sleep(0.02)

    canceller = threading.Thread(target=cancel_when_created)
    canceller.start()
    response = run(api, interaction, HTTP_PREFER="wait=20")
    canceller.join()
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    assert response.json()["tasks"]["nap"]["status"] == "cancelled"


# --- under uvicorn -----------------------------------------------------------------------------


@pytest.fixture
def asgi_server():
    server = AsgiServer(extra_env={"JUNCTION_ASGI_THREADS": "2", "LOG_LEVEL": "WARNING"}).start()
    yield server
    server.stop()


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_two_hundred_waiting_callers_share_one_process_with_a_few_threads(
    default_queue_unconsumed, asgi_server, user,
):
    from accounts.services import api_key_create

    key = api_key_create(user=user, name="crowd").key
    interaction = make_interaction(user, tasks=NAP, active=True)
    callers = 200
    auth = {"Authorization": f"Api-Key {key}", "Prefer": "wait=60"}
    answers: list = []

    async def crowd():
        answers.extend(await asyncio.gather(*(
            request(asgi_server.base_url, "POST", f"/api/interactions/{interaction.id}/run/", body={}, headers=auth)
            for _ in range(callers)
        )))

    calling = threading.Thread(target=asyncio.run, args=(crowd(),))
    calling.start()
    deadline = time.monotonic() + 60
    while Session.objects.filter(interaction=interaction).count() < callers:
        assert time.monotonic() < deadline, "the calls did not all start"
        time.sleep(0.2)
    time.sleep(0.5)
    assert not answers  # every caller is waiting now
    threads = asgi_server.threads()
    for session in Session.objects.filter(interaction=interaction):
        session_cancel(session=session)
    calling.join(60)
    assert [answer.status for answer in answers] == [200] * callers
    assert {answer.json()["status"] for answer in answers} == {"cancelled"}
    assert len({answer.json()["id"] for answer in answers}) == callers
    # Two lanes, the event loop, and a few helpers (uvicorn, asyncio's resolver): not one per caller.
    assert threads < 20, threads


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_a_waited_call_under_uvicorn_keeps_the_run_endpoints_answers(default_queue_unconsumed, asgi_server, user):
    from accounts.services import api_key_create

    key = api_key_create(user=user, name="asgi").key
    auth = {"Authorization": f"Api-Key {key}"}
    active = make_interaction(user, tasks=NAP, active=True)
    inactive = make_interaction(user, tasks=NAP, active=False)

    async def calls():
        timed_out = await request(asgi_server.base_url, "POST", f"/api/interactions/{active.id}/run/",
                                  body={}, headers={**auth, "Prefer": "wait=0.5"})
        refused = await request(asgi_server.base_url, "POST", f"/api/interactions/{inactive.id}/run/",
                                body={}, headers={**auth, "Prefer": "wait=5"})
        anonymous = await request(asgi_server.base_url, "POST", f"/api/interactions/{active.id}/run/", body={})
        return timed_out, refused, anonymous

    timed_out, refused, anonymous = asyncio.run(calls())
    assert timed_out.status == 202 and timed_out.json()["status"] == "queued"
    assert timed_out.headers["location"] == f"/api/sessions/{timed_out.json()['id']}/"
    assert timed_out.headers["preference-applied"] == "wait=0.5"
    assert refused.status == 409 and refused.json()["code"] == "interaction_inactive"
    assert anonymous.status == 401 and set(anonymous.json()) == {"code", "message", "details"}


# --- the shared pub/sub connection -------------------------------------------------------------


def test_a_lost_pubsub_connection_is_restored_and_its_waiters_look_again():
    import redis
    from django.conf import settings

    session_id = f"reconnect-{time.monotonic_ns()}"

    async def scenario():
        events.serve_on_this_loop()  # as the ASGI server does: one shared connection
        try:
            async with events.subscribe(session_id) as subscription:
                hub = events._hubs[asyncio.get_running_loop()]
                host, port = hub.pubsub.connection._writer.get_extra_info("sockname")[:2]
                admin = redis.Redis.from_url(settings.JUNCTION_EVENTS_URL)
                ours = [c["id"] for c in admin.client_list() if c["addr"] == f"{host}:{port}"]
                admin.client_kill_filter(_id=ours[0])  # only this test's connection
                after_loss = await subscription.next(10)
                events.publish_session_end(session_id, {"status": "completed", "tasks": {}})
                after_restore = await subscription.next(10)
                return after_loss, after_restore
        finally:
            await events.close_server_loop()

    after_loss, after_restore = asyncio.run(scenario())
    assert after_loss.kind == events.RESYNC  # messages may have been missed: look again
    assert after_restore.kind == events.SESSION and after_restore.data["status"] == "completed"


# --- who is woken by what ------------------------------------------------------------------------

RUNNING = {"status": "running", "output": None, "error": None, "attempts": 1, "started_at": None,
           "finished_at": None, "logs": "", "worker": "w"}


def _changes_then_end(session_id: str) -> None:
    """Publish two task changes, see them sent, then publish the end (as a worker's step does)."""
    from interactions import redis_sender

    events.publish_task_changes(session_id, {"a": RUNNING, "b": RUNNING})
    assert redis_sender.flush()
    events.publish_session_end(session_id, {"status": "completed", "tasks": {}})


async def _received(session_id: str, *, end_only: bool) -> list[tuple[str, str | None]]:
    async with events.subscribe(session_id, end_only=end_only) as subscription:
        await asyncio.to_thread(_changes_then_end, session_id)
        received = []
        while (event := await subscription.next(10)) is not None:
            received.append((event.kind, event.name))
            if event.kind == events.SESSION:
                return received
        return received


@pytest.mark.parametrize("shared", [True, False], ids=["shared connection", "own connection"])
def test_a_waiter_is_woken_by_the_end_only_and_a_stream_by_every_change(shared):
    session_id = f"wake-{time.monotonic_ns()}"

    async def scenario():
        if shared:
            events.serve_on_this_loop()  # as the ASGI server does
        try:
            waiter = await _received(session_id, end_only=True)
            stream = await _received(f"{session_id}-s", end_only=False)
            return waiter, stream
        finally:
            if shared:
                await events.close_server_loop()

    waiter, stream = asyncio.run(scenario())
    assert waiter == [(events.SESSION, None)]  # the task changes before it never reached it
    assert stream == [(events.TASK, "a"), (events.TASK, "b"), (events.SESSION, None)]


def test_the_embedded_bus_wakes_a_waiter_by_the_end_only_too(settings):
    bus = events._LocalBus()  # the embedded mode's (no Redis)

    async def received(end_only: bool) -> list[str]:
        async with bus.subscribe("s", end_only=end_only) as subscription:
            await asyncio.to_thread(bus.publish_many, "s", [events.Event(events.TASK, RUNNING, "a")])
            await asyncio.to_thread(bus.publish, "s", events.Event(events.SESSION, {"status": "completed"}), keep=True)
            kinds = []
            while (event := await subscription.next(0)) is not None:
                kinds.append(event.kind)
            return kinds

    assert asyncio.run(received(end_only=True)) == [events.SESSION]
    assert asyncio.run(received(end_only=False)) == [events.TASK, events.SESSION]
