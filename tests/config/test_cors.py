"""CORS is off unless CORS_ALLOWED_ORIGINS lists origins (settings are read at start-up: a subprocess)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PREFLIGHT = """
import django, json
django.setup()
from django.test import Client
response = Client().options("/api/interactions/", HTTP_ORIGIN="https://app.example.com",
                            HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
                            HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization, idempotency-key")
print(json.dumps({k.lower(): v for k, v in response.headers.items()}))
"""


def preflight(origins: str) -> dict:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.test_settings", "CORS_ALLOWED_ORIGINS": origins}
    done = subprocess.run([sys.executable, "-c", PREFLIGHT], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_cors_is_off_by_default():
    assert "access-control-allow-origin" not in preflight("")


def test_a_listed_origin_is_allowed():
    headers = preflight("https://app.example.com,https://other.example.com")
    assert headers["access-control-allow-origin"] == "https://app.example.com"
    assert "idempotency-key" in headers["access-control-allow-headers"]


def test_an_unlisted_origin_is_not():
    assert "access-control-allow-origin" not in preflight("https://other.example.com")
