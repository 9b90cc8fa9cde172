"""The OpenAPI document is the contract: Schemathesis fuzzes a live server against it (issue 9 item 6).

A real uvicorn process (`config.asgi`) on the test PostgreSQL and Redis; Schemathesis with every
check (turned on in tests/schemathesis.toml) and every phase that applies (coverage, fuzzing, stateful), authenticated as
a builder. Zero failures. Bounded: `--max-examples` and a fixed seed (JUNCTION_FUZZ_EXAMPLES and
JUNCTION_FUZZ_SEED change them, e.g. a random seed to look further), a few minutes at most.

The server has no Celery worker (the suite's shared pool stops consuming meanwhile): runs execute their pure tasks in the call and queue the rest,
so nothing the fuzzer invents (an `http_request` URL, an SMTP host) is ever connected to; the
task-type test endpoint runs in the server, and tests/schemathesis_hooks.py keeps its
destinations on loopback. Runs on workers are the business of tests/interactions/.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from rest_framework.test import APIClient

from accounts import enduser_tokens
from accounts.services import token_pair
from integrations import services as integration_services
from integrations.models import Integration
from interactions.models import Interaction
from tests.asgi_server import AsgiServer
from tests.conftest import TWITTER_APP_CREDENTIALS, make_app, make_end_user, make_integration, make_interaction, make_user

ROOT = Path(__file__).resolve().parent.parent
BLANKS = {
    "shape": {"type": "transform", "body": {"data": None, "expression": "items[0]"}},
    "reply": {"type": "response", "body": {"status_code": 200, "body": {"$ref": "shape"}},
              "execute_after": {"shape": ["completed"]}},
}


@pytest.fixture
def no_worker_consumes():
    """No worker takes a task while the fuzzer runs, and what it queued is dropped afterwards.

    In a whole-suite run the session-wide worker pool (tests/conftest.py `celery_workers`) may be
    up on the same broker: it stops consuming for the duration, as `default_queue_unconsumed` does.
    """
    import redis
    from django.conf import settings

    from config.celery import app

    queues = [queue.name for queue in settings.CELERY_TASK_QUEUES]
    cancelled = [queue for queue in queues if app.control.cancel_consumer(queue, reply=True, timeout=1.0)]
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    try:
        yield
    finally:
        broker.delete(*queues)
        for queue in cancelled:
            app.control.add_consumer(queue, reply=True, timeout=2.0)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_api_answers_as_its_openapi_document_says(no_worker_consumes):
    builder = make_user("fuzzer")
    make_integration(builder, "twitter", name="fuzz-twitter")
    make_interaction(builder, tasks=BLANKS, name="fuzz-active", active=True)
    make_interaction(builder, name="fuzz-inactive")
    # The end users' routes: an app (its slug, tests/schemathesis.toml), one of its end users (their
    # token, tests/schemathesis_hooks.py) and a provider app they connect through. The builder's
    # routes of an app's end users (`app_pk`) get another app, so that the fuzzer, which deletes
    # and disables the end users it lists there, leaves this one's token working.
    app = make_app(builder, slug="fuzz-app")
    end_user = make_end_user(app)
    managed = make_app(builder, slug="fuzz-managed", name="Managed")
    make_end_user(managed)
    # The end user's own objects: a connected account and a session of theirs.
    account = make_integration(builder, "twitter", name="fuzz-end-user-twitter")
    Integration.objects.filter(pk=account.pk).update(end_user=end_user)
    for_end_users = make_interaction(builder, tasks=BLANKS, name="fuzz-end-users", active=True)
    Interaction.objects.filter(pk=for_end_users.pk).update(app=app, access=Interaction.Access.END_USERS)
    end_user_token = enduser_tokens.token_pair(end_user=end_user)["access"]
    ran = APIClient().post(f"/api/interactions/{for_end_users.id}/run/", {"shape": {"data": [1]}}, format="json",
                           HTTP_AUTHORIZATION=f"Bearer {end_user_token}")
    assert ran.status_code in (200, 202), ran.content
    provider_app = integration_services.provider_app_create(
        user=builder, name="fuzz-twitter-app", provider="twitter", credentials=TWITTER_APP_CREDENTIALS)
    server = AsgiServer(extra_env={
        # Short task limits keep the task-type test endpoint quick whatever the fuzzer asks.
        "JUNCTION_DEFAULT_TASK_TIMEOUT": "1", "JUNCTION_MAX_TASK_TIMEOUT": "2",
        "JUNCTION_HARD_TIMEOUT_GRACE": "0.5", "JUNCTION_MAX_DELAY": "1",
    }).start()
    try:
        env = {
            **os.environ,
            "SCHEMATHESIS_HOOKS": "tests.schemathesis_hooks",
            "PYTHONPATH": str(ROOT),
            "JUNCTION_FUZZ_TOKEN": token_pair(user=builder)["access"],
            "JUNCTION_FUZZ_END_USER_TOKEN": end_user_token,
            "JUNCTION_FUZZ_END_USER_INTEGRATION": str(account.id),
            "JUNCTION_FUZZ_END_USER_SESSION": ran.json()["id"],
            "JUNCTION_FUZZ_APP": str(managed.id),
            "JUNCTION_FUZZ_PROVIDER_APP": str(provider_app.id),
            # What the toml pins stays for the whole run (tests/schemathesis_hooks.py `before_call`).
            "JUNCTION_FUZZ_KEEP": ",".join(str(pk) for pk in (app.id, managed.id, provider_app.id, account.id)),
        }
        result = subprocess.run(
            [sys.executable, "-m", "schemathesis.cli", "--config-file", str(ROOT / "tests/schemathesis.toml"),
             "run", f"{server.base_url}/api/schema/",
             "--phases", "examples,coverage,fuzzing,stateful",
             "--max-examples", os.environ.get("JUNCTION_FUZZ_EXAMPLES", "15"),
             "--seed", os.environ.get("JUNCTION_FUZZ_SEED", "20261201"),
             "--request-timeout", "30", "--workers", "1", "--no-color"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False,
        )
    finally:
        server.stop()
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-30000:]
    selected = re.search(r"Selected: (\d+)/(\d+)", output)
    tested = re.search(r"Tested: (\d+)", output)
    assert selected and tested, output[-5000:]
    # Every operation of the document was exercised, none left out.
    assert int(tested.group(1)) == int(selected.group(1)) == int(selected.group(2)) >= 36, output[-5000:]
    assert re.search(r"✅ Stateful", output), output[-5000:]
