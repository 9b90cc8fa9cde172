"""`manage.py serve` as a new user runs it: embedded mode, no services, printed credentials work."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.config.test_embedded import ROOT, embedded_env


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, response.read()


def _post_json(url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, json.loads(response.read())


def _found(pattern: str, text: str) -> str:
    match = re.search(pattern, text)
    assert match is not None, (pattern, text)
    return match.group(1)


def _wait_for_banner(process: subprocess.Popen, deadline: float) -> str:
    assert process.stdout is not None  # piped
    lines = []
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if "Quit with CONTROL-C" in line:
            return "".join(lines)
    raise AssertionError("serve did not start:\n" + "".join(lines))


@pytest.mark.slow
def test_serve_runs_the_api_admin_and_demo_on_the_embedded_default(tmp_path: Path):
    process = subprocess.Popen(
        [sys.executable, "manage.py", "serve", "--port", "0"], cwd=ROOT, env=embedded_env(tmp_path),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        banner = _wait_for_banner(process, time.monotonic() + 90)
        base, password, key = (
            _found(r"Junction is running at (http://[\d.]+:\d+)/", banner), _found(r"Password:\s+(\S+)", banner),
            _found(r"API key:\s+(jk_\S+)", banner),
        )
        assert "Embedded mode" in banner and "/run/" in banner and "curl" in banner

        assert _get(f"{base}/healthz")[0] == 200
        assert _get(f"{base}/readyz")[0] == 200
        status, tokens = _post_json(f"{base}/api/auth/login/", {"username": "demo", "password": password})
        assert status == 200 and tokens["access"]
        status, body = _get(f"{base}/api/interactions/", {"Authorization": f"Api-Key {key}"})
        listed = json.loads(body)["results"]
        assert [(i["name"], i["is_active"]) for i in listed] == [("demo-order-summary", True)]
        assert _get(f"{base}/api/docs/")[0] == 200
        assert _get(f"{base}/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js")[0] == 200
        assert _get(f"{base}/static/admin/css/base.css")[0] == 200
        assert _get(f"{base}/admin/login/")[0] == 200
        assert _get(f"{base}/static/interactions/junction-admin.css")[0] == 200
        status, landing = _get(f"{base}/")
        demo_id = listed[0]["id"]
        assert status == 200 and f"{base}/api/interactions/{demo_id}/run/".encode() in landing
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()
