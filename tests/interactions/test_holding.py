"""A waiting call holds its session's timers itself (interactions/holding.py).

Under a real uvicorn process with nobody consuming the `default` queue: a session of delays and
pure tasks that the caller waits for ends in the calling process and sends no message; every
other case sends the timers' messages, and a server that goes away hands its timers over (on a
shutdown) or leaves them to the sweeper (killed outright).
"""
from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from datetime import timedelta

import pytest
from django.conf import settings

from interactions.models import Session
from interactions.sweeper import sessions_sweep
from tests.asgi_server import AsgiServer, request
from tests.conftest import make_interaction

DELAYS_JOIN = {
    "d1": {"type": "delay", "body": {"seconds": 0.4}},
    "d2": {"type": "delay", "body": {"seconds": 0.6}},
    "join": {"type": "transform", "execute_after": {"d1": ["completed"], "d2": ["completed"]},
             "body": {"data": {"a": {"$ref": "d1.status"}, "b": {"$ref": "d2.status"}}, "expression": "@"}},
}


def one_delay(seconds: float) -> dict:
    return {"nap": {"type": "delay", "body": {"seconds": seconds}}}


@pytest.fixture
def server():
    server = AsgiServer(extra_env={"LOG_LEVEL": "WARNING"}).start()
    yield server
    server.stop()


@pytest.fixture
def key(user):
    from accounts.services import api_key_create

    return api_key_create(user=user, name="holding").key


def call(server, interaction, key, wait):
    return asyncio.run(request(server.base_url, "POST", f"/api/interactions/{interaction.id}/run/", body={},
                               headers={"Authorization": f"Api-Key {key}", "Prefer": f"wait={wait}"}))


def messages(broker) -> int:
    return broker.llen("default")


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_a_waited_session_of_delays_ends_in_the_calling_process_and_sends_nothing(
    default_queue_unconsumed, server, user, key,
):
    interaction = make_interaction(user, tasks=DELAYS_JOIN, active=True)
    answer = call(server, interaction, key, wait=10)

    assert answer.status == 200
    body = answer.json()
    assert body["status"] == "completed"
    assert body["result"] == {"join": {"a": "completed", "b": "completed"}}
    tasks = body["tasks"]
    assert {name: task["status"] for name, task in tasks.items()} == dict.fromkeys(DELAYS_JOIN, "completed")
    assert {task["worker"].split("@")[0] for task in tasks.values()} == {"api"}
    assert messages(default_queue_unconsumed) == 0  # no worker was needed, none was asked
    session = Session.objects.get(pk=body["id"])
    assert (session.finished_at - session.started_at).total_seconds() >= 0.6


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_a_wait_too_short_for_the_timer_sends_its_message(default_queue_unconsumed, server, user, key):
    interaction = make_interaction(user, tasks=one_delay(1.0), active=True)
    answer = call(server, interaction, key, wait=1.5)  # due less than a second before the wait ends

    assert answer.status == 202 and answer.json()["status"] == "running"
    assert messages(default_queue_unconsumed) == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_a_delay_before_a_task_that_needs_a_worker_is_not_held(default_queue_unconsumed, server, user, key):
    tasks = {**one_delay(0.2), "fetch": {"type": "http_request", "execute_after": {"nap": ["completed"]},
                                          "body": {"url": "http://127.0.0.1:9/"}}}
    interaction = make_interaction(user, tasks=tasks, active=True)
    answer = call(server, interaction, key, wait=2)

    assert answer.status == 202
    assert messages(default_queue_unconsumed) == 1  # the chain delay → fetch, for the workers


def _caller_that_hangs_up(server, interaction, key) -> threading.Thread:
    """Call with a long wait and hang up as soon as the session exists."""
    async def hang_up():
        host, port = server.base_url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write((f"POST /api/interactions/{interaction.id}/run/ HTTP/1.1\r\nHost: {host}\r\n"
                      f"Authorization: Api-Key {key}\r\nPrefer: wait=30\r\nContent-Type: application/json\r\n"
                      f"Content-Length: 2\r\n\r\n{{}}").encode())
        await writer.drain()
        deadline = time.monotonic() + 20
        while not await asyncio.to_thread(Session.objects.filter(interaction=interaction).exists):
            assert time.monotonic() < deadline, "the call did not start"
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)  # the answer is pending: the timer is held
        writer.close()

    thread = threading.Thread(target=asyncio.run, args=(hang_up(),))
    thread.start()
    return thread


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_timers_held_by_a_server_that_shuts_down_are_sent_to_the_workers(default_queue_unconsumed, server, user,
                                                                         key):
    interaction = make_interaction(user, tasks=one_delay(5.0), active=True)
    _caller_that_hangs_up(server, interaction, key).join(30)
    time.sleep(0.3)
    assert messages(default_queue_unconsumed) == 0  # held: nothing sent yet
    server.stop()  # SIGTERM: a graceful shutdown cancels the holder, which hands the timer over

    assert messages(default_queue_unconsumed) == 1
    session = Session.objects.get(interaction=interaction)
    assert session.status == "running" and session.task_runs.get().status == "running"


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_timers_held_by_a_killed_server_are_resumed_by_the_sweeper(default_queue_unconsumed, server, user, key):
    interaction = make_interaction(user, tasks=one_delay(5.0), active=True)
    _caller_that_hangs_up(server, interaction, key).join(30)
    time.sleep(0.3)
    os.killpg(server.process.pid, signal.SIGKILL)
    server.process.wait()
    assert messages(default_queue_unconsumed) == 0

    session = Session.objects.get(interaction=interaction)
    claim = session.task_runs.get()
    # Once the claim ran out and the session made no progress for JUNCTION_STALL_SECONDS:
    later = max(claim.lease_expires_at, session.updated_at + timedelta(seconds=settings.JUNCTION_STALL_SECONDS))
    report = sessions_sweep(now=later + timedelta(seconds=1))

    assert report.resumed == 1
    assert messages(default_queue_unconsumed) == 1  # the timer's delivery, which records it
