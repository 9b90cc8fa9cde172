"""A task type whose library quotes a secret in its exception does not leak it."""
from __future__ import annotations

import logging

import pytest

from tasks_catalog.base import TaskFailed, TaskType
from tasks_catalog.fields import FieldSpec
from tasks_catalog.registry import task_types
from tests.conftest import TWITTER_CREDENTIALS, make_integration


class LeakyType(TaskType):
    """Fails the way careless client libraries do: with the credential in the message."""

    key = "leaky_test_type"
    name = "Leaky (tests only)"
    provider = "twitter"
    fields = (FieldSpec("mode", "string", required=True),)

    def run(self, body, context):
        secret = context.client().consumer_secret  # the client library holds the secret
        if body["mode"] == "crash":
            raise ValueError(f"cannot encode {secret!r}")
        raise TaskFailed(f"server said: bad key {secret}", transient=True)


@pytest.fixture
def leaky():
    task_types.register(LeakyType())
    yield
    task_types._items.pop(LeakyType.key)


@pytest.mark.parametrize("mode", ["crash", "fail"])
def test_secret_values_are_cut_from_errors_and_logs(leaky, api, user, mode, caplog):
    integration = make_integration(user, "twitter")
    with caplog.at_level(logging.DEBUG):
        response = api.post(f"/api/task-types/{LeakyType.key}/test/",
                            {"body": {"mode": mode}, "integration": str(integration.id)}, format="json")
    assert response.status_code == 200
    result = response.json()
    assert result["status"] == "failed"
    assert "***" in result["error"]
    secret = TWITTER_CREDENTIALS["consumer_secret"]
    assert secret not in response.content.decode()
    assert secret not in caplog.text
