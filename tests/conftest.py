"""Shared fixtures: users, authenticated API clients, factories for integrations and interactions."""
from __future__ import annotations

import itertools
from typing import Any

import pytest
from rest_framework.test import APIClient

from accounts.models import User
from integrations import services as integration_services
from interactions import services as interaction_services

# The admin's fixtures (superuser_client, builder, builder_client).
pytest_plugins = ["tests.admin_helpers"]

_counter = itertools.count(1)
PASSWORD = "correct-horse-battery-staple"


def make_user(username: str | None = None) -> User:
    name = username or f"user{next(_counter)}"
    return User.objects.create_user(username=name, email=f"{name}@example.com", password=PASSWORD)


def client_for(user: User) -> APIClient:
    """An APIClient that sends a real JWT, as a caller would."""
    client = APIClient()
    response = client.post("/api/auth/login/", {"username": user.username, "password": PASSWORD}, format="json")
    assert response.status_code == 200, response.content
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {response.json()['access']}")
    return client


@pytest.fixture(autouse=True)
def _fresh_throttle_windows():
    """Every test starts with no login, registration or per-user throttle window used."""
    from accounts import rate_limits

    rate_limits.clear()
    yield


@pytest.fixture
def user(db) -> User:
    return make_user("alice")


@pytest.fixture
def other_user(db) -> User:
    return make_user("bob")


@pytest.fixture
def api(user) -> APIClient:
    return client_for(user)


@pytest.fixture
def other_api(other_user) -> APIClient:
    return client_for(other_user)


@pytest.fixture
def anon() -> APIClient:
    return APIClient()


TWITTER_CREDENTIALS = {
    "consumer_key": "ck-public",
    "consumer_secret": "cs-very-secret-1",
    "access_token": "at-public",
    "access_token_secret": "ats-very-secret-2",
}
# A builder's Twitter developer app (a provider app): accounts connect through it by OAuth.
TWITTER_APP_CREDENTIALS: dict[str, Any] = {"consumer_key": "ck-app-public", "consumer_secret": "cs-app-very-secret-4"}
SMTP_CREDENTIALS: dict[str, Any] = {
    "host": "127.0.0.1",
    "port": 2525,
    "username": "mailer",
    "password": "smtp-very-secret-3",
    "use_tls": False,
    "from_email": "junction@example.com",
}


def make_integration(user: User, provider: str = "twitter", name: str | None = None, **credentials: Any):
    base = TWITTER_CREDENTIALS if provider == "twitter" else SMTP_CREDENTIALS
    return integration_services.integration_create(
        user=user, name=name or f"{provider}-{next(_counter)}", provider=provider,
        credentials={**base, **credentials},
    )


SIMPLE_TASKS = {
    "shape": {"type": "transform", "body": {"data": None, "expression": "items[0]"}},
    "check": {
        "type": "condition",
        "body": {"data": {"$ref": "shape"}, "expression": "@ != null"},
        "execute_after": {"shape": ["completed"]},
    },
}


def make_interaction(user: User, tasks: dict | None = None, name: str | None = None, active: bool = False):
    interaction = interaction_services.interaction_create(
        user=user, name=name or f"interaction-{next(_counter)}", tasks=tasks or SIMPLE_TASKS
    )
    if active:
        interaction = interaction_services.interaction_set_active(interaction=interaction, active=True)
    return interaction


@pytest.fixture(scope="session")
def celery_workers(django_db_setup, django_db_blocker):
    """Two real `celery worker` processes (prefork ×2) on Redis, for the whole test session."""
    from tests.workers import WorkerPool, flush_redis

    with django_db_blocker.unblock():
        flush_redis()
        pool = WorkerPool(count=2, concurrency=2).start()
    yield pool
    pool.stop()


# --- External services for the task types (fake Twitter API, SMTP server) --------------------

@pytest.fixture(scope="session", autouse=True)
def fake_twitter():
    """The fake Twitter API for the whole run; JUNCTION_TWITTER_API_BASE points at it.

    Session-scoped and autouse so that the variable is in os.environ before the session-scoped
    `celery_workers` start (they inherit it), and in this process's settings too.
    """
    import os

    from django.test.utils import override_settings

    from tests.fake_twitter import FakeTwitter

    server = FakeTwitter(
        consumers={TWITTER_CREDENTIALS["consumer_key"]: TWITTER_CREDENTIALS["consumer_secret"],
                   TWITTER_APP_CREDENTIALS["consumer_key"]: TWITTER_APP_CREDENTIALS["consumer_secret"]},
        tokens={TWITTER_CREDENTIALS["access_token"]: TWITTER_CREDENTIALS["access_token_secret"]},
    ).start()
    previous = os.environ.get("JUNCTION_TWITTER_API_BASE")
    os.environ["JUNCTION_TWITTER_API_BASE"] = server.base_url
    override = override_settings(JUNCTION_TWITTER_API_BASE=server.base_url)
    override.enable()
    yield server
    override.disable()
    if previous is None:
        os.environ.pop("JUNCTION_TWITTER_API_BASE", None)
    else:
        os.environ["JUNCTION_TWITTER_API_BASE"] = previous
    server.stop()


@pytest.fixture
def smtp_server():
    """An aiosmtpd server on 127.0.0.1 that accepts SMTP_CREDENTIALS' login."""
    from tests.smtp_server import SmtpServer

    server = SmtpServer(SMTP_CREDENTIALS["username"], SMTP_CREDENTIALS["password"]).start()
    yield server
    server.stop()


def smtp_integration(user: User, server, **credentials: Any):
    """An `smtp` integration pointing at a test `smtp_server`."""
    return make_integration(user, "smtp", port=server.port, **credentials)


@pytest.fixture
def default_queue_unconsumed():
    """The broker's `default` queue with nobody consuming it, for the duration of a test.

    This test does not start workers, but the session-wide worker pool may already run when
    the whole suite runs: stop its consumers of `default` so that anything sent stays visible.
    """
    import redis
    from django.conf import settings

    from config.celery import app

    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    replies = app.control.cancel_consumer("default", reply=True, timeout=1.0) or []
    try:
        broker.delete("default")
        yield broker
    finally:
        broker.delete("default")
        if replies:
            app.control.add_consumer("default", reply=True, timeout=2.0)


def finished(api, session_id: str, seconds: float = 20) -> dict:
    """Poll the session until it has finished (bounded), and return it."""
    import time

    for _ in range(int(seconds / 0.1)):
        session = api.get(f"/api/sessions/{session_id}/").json()
        if session["status"] not in ("queued", "running"):
            return session
        time.sleep(0.1)
    raise AssertionError(f"session {session_id} did not finish within {seconds} s: {session}")


# --- Apps and end users (docs/end-users.md) ---------------------------------------------------

def make_app(owner: User, slug: str | None = None, **options: Any):
    from accounts import app_services

    return app_services.app_create(owner=owner, name=options.pop("name", "App"),
                                   slug=slug or f"app-{next(_counter)}", **{"signup": "open", **options})


def make_end_user(app, email: str | None = None, group: str | None = None, password: str = PASSWORD):
    """An end user of `app` (registered through the service whatever the app's sign-up policy)."""
    from accounts import app_services
    from accounts.models import App

    signup = app.signup
    app.signup = App.Signup.OPEN
    try:
        end_user = app_services.end_user_register(app=app, email=email or f"eu{next(_counter)}@example.com",
                                                  password=password)
    finally:
        app.signup = signup
    if group is not None:
        end_user = app_services.end_user_update(end_user=end_user, group=group)
    return end_user


def end_user_tokens(end_user, password: str = PASSWORD) -> dict:
    """Log the end user in through their app's route; return {access, refresh}."""
    response = APIClient().post(f"/api/apps/{end_user.app.slug}/auth/login/",
                                {"email": end_user.email, "password": password}, format="json")
    assert response.status_code == 200, response.content
    return response.json()


def end_user_client(end_user, password: str = PASSWORD) -> APIClient:
    """An APIClient that sends the end user's real access token."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {end_user_tokens(end_user, password)['access']}")
    return client
