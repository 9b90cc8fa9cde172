"""The run path's caches (config/hotcache.py): used, announced, and never trusted to refuse or
to let in a caller the database would not.

Changes below are made the way that sends no signal at all (`QuerySet.update`, inside the
test's transaction, so never announced): only the check in the round trip that writes the
session (interactions.runstore.Expected) stands between a stale cache and a wrong answer.
"""
from __future__ import annotations

import time

import pytest
import redis
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from accounts import services as account_services
from accounts.models import ApiKey, User
from config import hotcache
from interactions.models import Interaction, Session
from tests.accounts.test_auth import assert_error
from tests.conftest import client_for, make_interaction

RUN_BODY = {"shape": {"data": {"items": [1]}}}


@pytest.fixture(autouse=True)
def _subscribed():
    """The caches are trusted only once this process's subscription is up."""
    hotcache.clear_all()
    assert hotcache._listener_ready() or _wait(lambda: hotcache._listener_ready())
    yield
    hotcache.clear_all()


def _wait(condition, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


def _round_trips(queries) -> list[str]:
    """The statements sent, without the savepoints of the test's own transaction."""
    return [q["sql"] for q in queries.captured_queries if "SAVEPOINT" not in q["sql"]]


def _run(client, interaction):
    return client.post(f"/api/interactions/{interaction.id}/run/", RUN_BODY, format="json", HTTP_PREFER="wait=5")


def _key_client(user, **options) -> tuple[APIClient, ApiKey]:
    created = account_services.api_key_create(user=user, name=f"k{time.monotonic_ns()}", **options)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {created.key}")
    return client, created.api_key


@pytest.mark.django_db
class TestTheCachesAreUsed:
    @pytest.mark.parametrize("kind", ["jwt", "api_key"])
    def test_a_warm_run_costs_one_round_trip(self, user, kind):
        """The caller, the interaction and the quota check travel with the session's inserts."""
        interaction = make_interaction(user, active=True)
        client = client_for(user) if kind == "jwt" else _key_client(user)[0]
        assert _run(client, interaction).status_code == 200
        with CaptureQueriesContext(connection) as queries:
            response = _run(client, interaction)
        assert response.status_code == 200, response.content
        assert response.json()["status"] == "completed"
        sent = _round_trips(queries)
        assert len(sent) == 1, [sql[:120] for sql in sent]
        assert "junction_insert_session_v1" in sent[0]  # the guards and the inserts (migration 0012)

    def test_other_routes_read_the_database(self, user, api):
        """Only run calls use the caches: elsewhere a change shows at once."""
        interaction = make_interaction(user, active=True)
        assert _run(api, interaction).status_code == 200
        User.objects.filter(pk=user.pk).update(is_active=False)
        assert_error(api.get("/api/auth/me/"), 401)


@pytest.mark.django_db
class TestStaleEntriesNeverLetInOrKeepOut:
    def test_a_deactivated_interaction_is_409(self, user, api):
        interaction = make_interaction(user, active=True)
        assert _run(api, interaction).status_code == 200
        before = Session.objects.count()
        Interaction.objects.filter(pk=interaction.pk).update(is_active=False)
        assert_error(_run(api, interaction), 409, "interaction_inactive")
        assert Session.objects.count() == before

    def test_an_activated_interaction_runs(self, user, api):
        interaction = make_interaction(user, active=True)
        assert _run(api, interaction).status_code == 200
        Interaction.objects.filter(pk=interaction.pk).update(is_active=False)
        assert _run(api, interaction).status_code == 409
        Interaction.objects.filter(pk=interaction.pk).update(is_active=True)
        assert _run(api, interaction).status_code == 200

    def test_a_new_version_is_the_one_that_runs(self, user, api):
        from interactions import services

        interaction = make_interaction(user, active=True)
        assert _run(api, interaction).status_code == 200
        changed = services.interaction_update(interaction=interaction, tasks={
            "shape": {"type": "transform", "body": {"data": None, "expression": "length(items)"}}})
        Interaction.objects.filter(pk=interaction.pk).update(current_version=changed.current_version)
        response = _run(api, interaction)
        assert response.status_code == 200, response.content
        assert response.json()["version"] == changed.current_version.number

    def test_a_deactivated_user_is_401(self, user, api):
        interaction = make_interaction(user, active=True)
        assert _run(api, interaction).status_code == 200
        User.objects.filter(pk=user.pk).update(is_active=False)
        assert _run(api, interaction).status_code == 401

    def test_revoked_tokens_are_401(self, user, api):
        interaction = make_interaction(user, active=True)
        assert _run(api, interaction).status_code == 200
        User.objects.filter(pk=user.pk).update(token_version=user.token_version + 1)
        assert_error(_run(api, interaction), 401)

    def test_a_revoked_or_expired_key_is_401(self, user):
        interaction = make_interaction(user, active=True)
        for change in ({"revoked_at": timezone.now()}, {"expires_at": timezone.now()}):
            client, key = _key_client(user)
            assert _run(client, interaction).status_code == 200
            ApiKey.objects.filter(pk=key.pk).update(**change)
            assert_error(_run(client, interaction), 401)

    def test_an_interaction_given_to_another_user_is_404(self, user, other_user, api):
        interaction = make_interaction(user, active=True)
        assert _run(api, interaction).status_code == 200
        Interaction.objects.filter(pk=interaction.pk).update(user=other_user)
        assert_error(_run(api, interaction), 404)

    def test_a_changed_plan_is_the_one_that_throttles(self, settings, user, api):
        settings.JUNCTION_RATE_PLANS = {**settings.JUNCTION_RATE_PLANS, "tiny": "1/min"}
        interaction = make_interaction(user, active=True)
        assert _run(api, interaction).status_code == 200
        User.objects.filter(pk=user.pk).update(plan="tiny")
        codes = [_run(api, interaction).status_code for _ in range(3)]
        assert 429 in codes, codes


@pytest.mark.django_db
class TestAnnouncements:
    def test_a_message_from_another_process_drops_the_entry(self, user, api):
        interaction = make_interaction(user, active=True)
        assert _run(api, interaction).status_code == 200
        cache = hotcache._caches["interactions"]
        assert cache.get(str(interaction.pk)) is not None
        client = redis.Redis.from_url(settings.JUNCTION_EVENTS_URL)
        client.publish(hotcache.CHANNEL, f"interactions:{interaction.pk}")
        assert _wait(lambda: cache.get(str(interaction.pk)) is None)

    def test_a_saved_change_drops_the_entry_here_at_once(self, user, api):
        from interactions import services

        interaction = make_interaction(user, active=True)
        assert _run(api, interaction).status_code == 200
        services.interaction_set_active(interaction=interaction, active=False)
        assert hotcache._caches["interactions"].get(str(interaction.pk)) is None

    def test_announced_after_commit(self, user, django_capture_on_commit_callbacks):
        client = redis.Redis.from_url(settings.JUNCTION_EVENTS_URL)
        pubsub = client.pubsub()
        pubsub.subscribe(hotcache.CHANNEL)
        assert pubsub.get_message(timeout=2)["type"] == "subscribe"
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            User.objects.get(pk=user.pk).save()
        assert pubsub.get_message(timeout=0.2) is None  # nothing before the commit
        for callback in callbacks:
            callback()
        wanted = f"users:{user.pk}".encode()
        seen = [pubsub.get_message(timeout=1) for _ in range(5)]
        pubsub.close()
        assert any(m and m["type"] == "message" and m["data"] == wanted for m in seen), seen

    def test_without_a_subscription_nothing_is_trusted(self, settings, user, api):
        interaction = make_interaction(user, active=True)
        settings.JUNCTION_EVENTS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
        assert not hotcache._listener_ready()
        assert _run(api, interaction).status_code == 200  # the compiled version is cached apart
        with CaptureQueriesContext(connection) as queries:
            assert _run(api, interaction).status_code == 200
        with CaptureQueriesContext(connection) as again:
            assert _run(api, interaction).status_code == 200
        assert len(_round_trips(again)) == len(_round_trips(queries)) > 1
