"""The embedded mode end to end: `manage.py serve` with SQLite and its in-process worker.

A fresh server process with none of the distributed stack's variables, driven over HTTP as a
user would: register, log in, create and activate a diamond with two parallel 1 s delays,
run it with `Prefer: wait`. The two delays must overlap and the join wait for both.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def clean_env(tmp_path: Path) -> dict[str, str]:
    """The environment minus everything that selects or configures the distributed stack."""
    env = {
        key: value for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "SECRET_KEY", "DJANGO_SETTINGS_MODULE"}
        and not key.startswith(("CELERY_", "JUNCTION_"))
    }
    env.update(
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        JUNCTION_STATE_DIR=str(tmp_path / "state"),
        PYTHONUNBUFFERED="1",
    )
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def call(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any, Any]:
    """Send a JSON request; return (status, headers, parsed body) for any status.

    The headers keep `http.client`'s case-insensitive lookup: servers may send names in any case.
    """
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={
        "Content-Type": "application/json", **(headers or {}),
    })
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, error.headers, json.loads(error.read() or b"null")


@pytest.fixture
def server(tmp_path):
    """A `manage.py serve --no-demo` process on a free port; yields its base URL."""
    port = free_port()
    log = open(tmp_path / "serve.log", "wb")
    process = subprocess.Popen(
        [sys.executable, "manage.py", "serve", "--port", str(port), "--no-demo"],
        cwd=ROOT, env=clean_env(tmp_path), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):  # bounded: migrations on a new SQLite file take a few seconds
            if process.poll() is not None:
                raise AssertionError("serve exited:\n" + (tmp_path / "serve.log").read_text())
            try:
                with urllib.request.urlopen(f"{base}/healthz", timeout=1) as response:
                    if response.status == 200:
                        break
            except OSError:
                time.sleep(0.1)
        else:
            raise AssertionError("serve did not answer /healthz:\n" + (tmp_path / "serve.log").read_text())
        yield base
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)  # the server's own Ctrl-C path stops the worker
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        log.close()


DIAMOND = {
    "start": {"type": "transform", "body": {"data": None, "expression": "order"}},
    "left": {"type": "delay", "body": {"seconds": 1}, "execute_after": {"start": ["completed"]}},
    "right": {"type": "delay", "body": {"seconds": 1}, "execute_after": {"start": ["completed"]}},
    "join": {"type": "transform",
             "body": {"data": {"order": {"$ref": "start"}, "left": {"$ref": "left"}}, "expression": "order"},
             "execute_after": {"left": ["completed"], "right": ["completed"]}},
}


def ts(value: str) -> datetime:
    return datetime.fromisoformat(value)


def test_embedded_server_runs_a_diamond_with_parallel_delays(server, tmp_path):
    status, _, user = call("POST", f"{server}/api/auth/register/", {
        "username": "embedded", "email": "embedded@example.com", "password": "a-long-unusual-passphrase-42",
    })
    assert status == 201, user
    status, _, tokens = call("POST", f"{server}/api/auth/login/", {
        "username": "embedded", "password": "a-long-unusual-passphrase-42",
    })
    assert status == 200, tokens
    auth = {"Authorization": f"Bearer {tokens['access']}"}

    status, _, interaction = call("POST", f"{server}/api/interactions/", {"name": "diamond", "tasks": DIAMOND}, auth)
    assert status == 201, interaction
    status, _, activated = call("POST", f"{server}/api/interactions/{interaction['id']}/activate/", None, auth)
    assert status == 200 and activated["is_active"] is True

    status, headers, session = call(
        "POST", f"{server}/api/interactions/{interaction['id']}/run/", {"start": {"data": {"order": 17}}},
        {**auth, "Prefer": "wait=10"},
    )
    assert status == 200, session
    assert headers["Location"] == f"/api/sessions/{session['id']}/"
    assert session["status"] == "completed"
    assert session["result"] == {"join": 17}
    tasks = session["tasks"]
    assert {name: task["status"] for name, task in tasks.items()} == dict.fromkeys(DIAMOND, "completed")

    left, right, join, start = (tasks[name] for name in ("left", "right", "join", "start"))
    # Both delays started after the root finished and ran at the same time.
    assert ts(left["started_at"]) >= ts(start["finished_at"])
    assert ts(right["started_at"]) >= ts(start["finished_at"])
    assert ts(left["started_at"]) < ts(right["finished_at"])
    assert ts(right["started_at"]) < ts(left["finished_at"])
    # The join waited for both.
    assert ts(join["started_at"]) >= max(ts(left["finished_at"]), ts(right["finished_at"]))
    assert session["duration_ms"] < 1900, session["duration_ms"]
    # Where each ran (SQLite, so the ORM statements): everything in the process that took the
    # call — the root at once, the delays held by the waiting call (interactions/holding.py), the
    # join where the delays ended.
    host = socket.gethostname()
    assert {task["worker"] for task in tasks.values()} == {f"api@{host}"}

    # A caller who does not wait: the delays are the in-process worker's, the join where a delay ended.
    status, _, queued = call("POST", f"{server}/api/interactions/{interaction['id']}/run/",
                             {"start": {"data": {"order": 18}}}, auth)
    assert status == 202, queued
    deadline = time.monotonic() + 10
    while queued["status"] != "completed":
        assert time.monotonic() < deadline, queued
        time.sleep(0.1)
        status, _, queued = call("GET", f"{server}/api/sessions/{queued['id']}/", None, auth)
    left, right, join = (queued["tasks"][name] for name in ("left", "right", "join"))
    assert left["worker"].startswith("embedded-") and left["worker"].endswith(f"@{host}"), left["worker"]
    assert join["worker"] in {left["worker"], right["worker"]}

    # The state lives where the environment said: the SQLite file and the generated secrets.
    assert (tmp_path / "db.sqlite3").stat().st_size > 0
    assert (tmp_path / "state" / "secret_key").exists()
    status, _, again = call("GET", f"{server}/api/sessions/{session['id']}/", None, auth)
    assert status == 200 and again["status"] == "completed"
