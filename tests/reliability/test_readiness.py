"""Liveness and readiness probes, and the API's answer while PostgreSQL is unreachable."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent


def closed_port() -> int:
    """A local port that nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_healthz_answers_without_touching_services(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_is_200_when_database_and_broker_are_up(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "broker": "ok"}}


@pytest.mark.django_db
def test_readyz_is_503_naming_the_broker_when_it_is_unreachable(client, settings):
    settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{closed_port()}/0"
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["code"] == "service_unavailable"
    assert "broker" in body["message"] and "database" not in body["message"]
    assert body["details"] == {"broker": ["unreachable"]}


def _get(url: str, **headers) -> tuple[int, dict]:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.fixture(scope="module")
def server_without_database():
    """gunicorn serving Junction with DATABASE_URL pointing at a port nothing listens on."""
    port = closed_port()
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="config.test_settings",
               DATABASE_URL=f"postgres://postgres@127.0.0.1:{closed_port()}/junction", LOG_LEVEL="CRITICAL")
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "config.wsgi", "-b", f"127.0.0.1:{port}", "-w", "1",
         "--timeout", "60", "--log-level", "warning"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if _get(f"{base}/healthz")[0] == 200:
                    break
            except OSError:
                time.sleep(0.2)
        else:
            raise RuntimeError("gunicorn did not start: " + process.stderr.read1().decode(errors="replace"))
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.mark.slow
def test_api_answers_503_in_the_error_shape_while_the_database_is_unreachable(server_without_database):
    status, body = _get(f"{server_without_database}/api/interactions/",
                        Authorization="Api-Key jk_not_checked_because_the_database_is_down")
    assert status == 503
    assert body == {"code": "service_unavailable",
                    "message": "The database is unavailable. Try again later.", "details": {}}


@pytest.mark.slow
def test_readyz_is_503_naming_the_database_while_it_is_unreachable(server_without_database):
    status, body = _get(f"{server_without_database}/readyz")
    assert status == 503
    assert body["code"] == "service_unavailable"
    assert body["details"] == {"database": ["unreachable"]}


@pytest.mark.slow
def test_healthz_stays_200_while_the_database_is_unreachable(server_without_database):
    assert _get(f"{server_without_database}/healthz") == (200, {"status": "ok"})
