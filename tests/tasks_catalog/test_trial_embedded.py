"""The code trial in the embedded mode: the in-process worker consumes the `code` queue, so
`POST /api/task-types/code/test/` works there too (through the memory broker)."""
from __future__ import annotations

import pytest

from tests.test_embedded import call, server  # noqa: F401  (the fixture)

PASSWORD = "a-long-unusual-passphrase-42"


@pytest.mark.slow
def test_the_code_trial_runs_on_the_embedded_worker(server):  # noqa: F811
    status, _, _ = call("POST", f"{server}/api/auth/register/",
                        {"username": "coder", "email": "coder@example.com", "password": PASSWORD})
    assert status == 201
    _, _, tokens = call("POST", f"{server}/api/auth/login/", {"username": "coder", "password": PASSWORD})
    auth = {"Authorization": f"Bearer {tokens['access']}"}
    code = "def main(inputs):\n    print('adding')\n    return sum(inputs['numbers'])\n"
    status, _, result = call("POST", f"{server}/api/task-types/code/test/",
                             {"body": {"code": code, "inputs": {"numbers": [1, 2, 3]}}}, auth)
    assert status == 200, result
    assert result["status"] == "completed", result
    assert result["output"] == 6
    assert result["logs"] == "adding"
