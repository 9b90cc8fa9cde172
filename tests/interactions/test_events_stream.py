"""`GET /api/sessions/{id}/events/`: ids, Last-Event-ID resume, keep-alives, pushed events.

Sessions stay queued here unless a test ends them (a real cancel), so what the stream sends is
decided by the test: its own pushes (`events.publish_task_change`) and the database.
"""
from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from django.test import override_settings

from django.utils import timezone

from interactions import events, selectors
from interactions.models import Session, TaskRun
from interactions.sessions import session_cancel, session_start
from tests.asgi_server import AsgiServer, open_stream, read_chunk
from tests.conftest import make_interaction

# Two steps only a worker runs (not timers: the call itself would claim a delay).
TWO = {
    "first": {"type": "http_request", "body": {"url": "http://127.0.0.1:9/"}},
    "second": {"type": "http_request", "body": {"url": "http://127.0.0.1:9/"}},
}


def parse(text: str) -> list[dict]:
    """SSE blocks as dicts ({"comment": …} for a comment line)."""
    blocks = []
    for block in text.strip().split("\n\n"):
        fields: dict = {}
        for line in block.splitlines():
            if line.startswith(":"):
                fields["comment"] = line[1:].strip()
            elif line:
                name, _, value = line.partition(": ")
                fields[name] = json.loads(value) if name == "data" else value
        blocks.append(fields)
    return blocks


def stream(api, session_id, **extra) -> tuple[int, list[dict]]:
    response = api.get(f"/api/sessions/{session_id}/events/", HTTP_ACCEPT="text/event-stream", **extra)
    if response.status_code != 200:
        return response.status_code, []
    return 200, parse(b"".join(response.streaming_content).decode())


def cancelled_session(user) -> Session:
    interaction = make_interaction(user, tasks=TWO, active=True)
    session, _ = session_start(user=user, interaction=interaction, data={})
    return session_cancel(session=session)


@pytest.mark.django_db(transaction=True)
def test_every_event_has_an_id_that_grows_and_the_last_one_says_end(default_queue_unconsumed, api, user):
    session = cancelled_session(user)
    _, blocks = stream(api, session.id)
    assert [(b["event"], b["data"].get("name"), b["data"]["status"]) for b in blocks] == [
        ("task", "first", "cancelled"), ("task", "second", "cancelled"), ("session", None, "cancelled"),
    ]
    ids = [b["id"] for b in blocks]
    sequence = [int(event_id.split("-")[0]) for event_id in ids]
    assert sequence[0] < sequence[1] <= sequence[2]
    assert ids[-1].endswith("-end") and not any(i.endswith("-end") for i in ids[:-1])


@pytest.mark.django_db(transaction=True)
def test_last_event_id_resumes_after_what_the_client_saw(default_queue_unconsumed, api, user):
    session = cancelled_session(user)
    _, full = stream(api, session.id)
    _, resumed = stream(api, session.id, HTTP_LAST_EVENT_ID=full[0]["id"])
    assert resumed == full[1:]
    response = api.get(f"/api/sessions/{session.id}/events/?last_event_id={full[0]['id']}",
                       HTTP_ACCEPT="text/event-stream")
    assert parse(b"".join(response.streaming_content).decode()) == full[1:]


@pytest.mark.django_db(transaction=True)
def test_a_client_that_saw_the_end_gets_204_so_it_stops_reconnecting(default_queue_unconsumed, api, user):
    session = cancelled_session(user)
    _, full = stream(api, session.id)
    status, _ = stream(api, session.id, HTTP_LAST_EVENT_ID=full[-1]["id"])
    assert status == 204


@pytest.mark.django_db(transaction=True)
def test_an_unknown_last_event_id_replays_everything(default_queue_unconsumed, api, user):
    session = cancelled_session(user)
    _, full = stream(api, session.id)
    _, replayed = stream(api, session.id, HTTP_LAST_EVENT_ID="not-one-of-ours")
    assert replayed == full


@pytest.mark.django_db(transaction=True)
@override_settings(JUNCTION_SSE_KEEPALIVE_SECONDS=0.2, JUNCTION_SSE_MAX_SECONDS=1)
def test_a_quiet_stream_sends_keep_alives_and_ends_at_its_time_limit(default_queue_unconsumed, api, user):
    interaction = make_interaction(user, tasks=TWO, active=True)
    session, _ = session_start(user=user, interaction=interaction, data={})
    _, blocks = stream(api, session.id)
    assert [(b.get("event"), b["data"].get("name")) for b in blocks if "event" in b][:2] == [
        ("task", "first"), ("task", "second"),
    ]
    assert {"comment": "keep-alive"} in blocks
    final = blocks[-1]
    assert final["event"] == "session" and final["data"]["status"] == "queued"
    assert not final["id"].endswith("-end")  # the session has not ended: a client may resume


# --- under uvicorn: pushed events --------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_the_stream_pushes_published_changes_then_diffs_the_end(default_queue_unconsumed, user):
    from accounts.services import api_key_create

    # The database is re-read only every minute here: what arrives sooner was pushed.
    server = AsgiServer(extra_env={"JUNCTION_SSE_POLL_SECONDS": "60", "JUNCTION_SSE_RESYNC_SECONDS": "60"}).start()
    try:
        key = api_key_create(user=user, name="sse").key
        interaction = make_interaction(user, tasks=TWO, active=True)
        session, _ = session_start(user=user, interaction=interaction, data={})
        received: list[dict] = []

        async def follow(after: str | None = None) -> int:
            headers = {"Authorization": f"Api-Key {key}"}
            if after:
                headers["Last-Event-ID"] = after
            reader, writer, status = await open_stream(server.base_url, f"/api/sessions/{session.id}/events/", headers)
            text = ""
            try:
                while (chunk := await asyncio.wait_for(read_chunk(reader), 20)) is not None:
                    text += chunk.decode()
                    *complete, text = text.split("\n\n")
                    for block in complete:
                        received.extend(parse(block))
                        await on_event(received[-1])
            finally:
                writer.close()
            return status

        async def on_event(block: dict) -> None:
            if [b.get("event") for b in received] == ["task", "task"]:  # the replay of both pending tasks
                await asyncio.to_thread(_claim_and_publish, session.pk, "first")
            elif block.get("data", {}).get("status") == "running":
                await asyncio.to_thread(_cancel, session.pk)

        assert asyncio.run(follow()) == 200
        assert [(b["event"], b["data"].get("name"), b["data"]["status"]) for b in received] == [
            ("task", "first", "pending"), ("task", "second", "pending"),
            ("task", "first", "running"),  # pushed: the stream does not re-read for a minute
            ("task", "first", "cancelled"), ("task", "second", "cancelled"),  # diffed from the end
            ("session", None, "cancelled"),
        ]
        assert received[-1]["id"].endswith("-end")

        # Resuming after the pushed event gives what came next, from the database.
        pushed_id = received[2]["id"]
        received.clear()
        assert asyncio.run(follow(after=pushed_id)) == 200
        assert [(b["event"], b["data"].get("name"), b["data"]["status"]) for b in received] == [
            ("task", "first", "cancelled"), ("task", "second", "cancelled"), ("session", None, "cancelled"),
        ]
    finally:
        server.stop()


def _claim_and_publish(session_id, name: str) -> None:
    """Do what a worker does when it takes a task: record it running, then publish the record."""
    run = TaskRun.objects.get(session_id=session_id, name=name)
    run.status, run.attempts, run.started_at = TaskRun.Status.RUNNING, 1, timezone.now()
    run.save()
    data = selectors.task_run_data(run)
    events.publish_task_change(session_id, data.pop("name"), data)


def _cancel(session_id) -> None:
    session_cancel(session=Session.objects.get(pk=session_id))


# --- the embedded mode ---------------------------------------------------------------------------


@pytest.mark.slow
def test_wait_and_events_work_in_the_embedded_mode(tmp_path: Path):
    from tests.config.test_embedded import ROOT, embedded_env

    process = subprocess.Popen(
        [sys.executable, "manage.py", "serve", "--port", "0", "--no-demo"], cwd=ROOT,
        env={**embedded_env(tmp_path), "JUNCTION_SSE_POLL_SECONDS": "60", "JUNCTION_SSE_RESYNC_SECONDS": "60"},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    assert process.stdout is not None  # piped
    try:
        base = None
        deadline = time.monotonic() + 90
        lines = []
        while time.monotonic() < deadline and base is None:
            line = process.stdout.readline()
            lines.append(line)
            if match := re.search(r"Junction is running at (http://[\d.]+:\d+)/", line):
                base = match.group(1)
        assert base, "".join(lines)
        token = _call(base, "POST", "/api/auth/register/", {
            "username": "embedded", "email": "e@example.com", "password": "a-long-enough-password-1",
        }) and _call(base, "POST", "/api/auth/login/", {
            "username": "embedded", "password": "a-long-enough-password-1",
        })[1]["access"]
        auth = {"Authorization": f"Bearer {token}"}
        _, interaction = _call(base, "POST", "/api/interactions/", {"name": "nap", "tasks": {
            "nap": {"type": "delay", "body": {"seconds": 0.5}},
            "after": {"type": "transform", "body": {"data": {"ok": True}, "expression": "ok"},
                      "execute_after": {"nap": ["completed"]}},
        }}, auth)
        _call(base, "POST", f"/api/interactions/{interaction['id']}/activate/", None, auth)

        status, waited = _call(base, "POST", f"/api/interactions/{interaction['id']}/run/", {},
                               {**auth, "Prefer": "wait=20"})
        assert status == 200 and waited["status"] == "completed" and waited["result"] == {"after": True}

        status, started = _call(base, "POST", f"/api/interactions/{interaction['id']}/run/", {}, auth)
        assert status == 202
        request = urllib.request.Request(f"{base}/api/sessions/{started['id']}/events/",
                                         headers={**auth, "Accept": "text/event-stream"})
        with urllib.request.urlopen(request, timeout=30) as response:
            blocks = parse(response.read().decode())
        assert blocks[-1]["event"] == "session" and blocks[-1]["data"]["status"] == "completed"
        assert blocks[-1]["id"].endswith("-end")
        last = {b["data"]["name"]: b["data"]["status"] for b in blocks if b.get("event") == "task"}
        assert last == {"nap": "completed", "after": "completed"}
    finally:
        process.terminate()
        process.wait(timeout=15)
        process.stdout.close()


def _call(base: str, method: str, path: str, body, headers: dict | None = None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{base}{path}", data=data, method=method,
                                     headers={"Content-Type": "application/json", **(headers or {})})
    with urllib.request.urlopen(request, timeout=30) as response:
        raw = response.read()
        return response.status, json.loads(raw) if raw else None
