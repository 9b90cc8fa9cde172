"""Schemathesis hooks for `tests/test_fuzz_api.py` (loaded through SCHEMATHESIS_HOOKS).

The fuzzer authenticates as a builder with a JWT from `POST /api/auth/login/`, using the
credentials the test puts in JUNCTION_FUZZ_USERNAME / JUNCTION_FUZZ_PASSWORD. A JWT rather than
an API key: the stateful phase deletes the API keys it lists, and it cannot revoke a JWT without
knowing the password.
"""
from __future__ import annotations

import os

import requests
import schemathesis


@schemathesis.auth(refresh_interval=3600)
class BuilderJwt:
    def get(self, case, context):
        base = os.environ["JUNCTION_FUZZ_BASE_URL"]
        response = requests.post(
            f"{base}/api/auth/login/",
            json={"username": os.environ["JUNCTION_FUZZ_USERNAME"], "password": os.environ["JUNCTION_FUZZ_PASSWORD"]},
            timeout=10,
        )
        response.raise_for_status()
        return response.json()["access"]

    def set(self, case, data, context):
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}
