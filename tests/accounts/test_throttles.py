"""Throttles: failed logins, registrations, and per-user limits on test/retry/events (docs/security.md)."""
from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from accounts.models import User
from interactions.models import Session
from tests.accounts.test_auth import assert_error
from tests.conftest import PASSWORD, make_interaction


def throttled(response) -> dict:
    body = assert_error(response, 429, "throttled")
    assert int(response["Retry-After"]) >= 1
    return body


def bad_login(client: APIClient, username: str, **extra):
    return client.post("/api/auth/login/", {"username": username, "password": "wrong"}, format="json", **extra)


def good_login(client: APIClient, username: str, **extra):
    return client.post("/api/auth/login/", {"username": username, "password": PASSWORD}, format="json", **extra)


@pytest.mark.django_db
class TestLoginThrottle:
    def test_failed_logins_per_username_are_limited_even_from_other_addresses(self, settings, user):
        settings.JUNCTION_THROTTLE_LOGIN = "3/min"
        client = APIClient()
        for number in range(3):
            assert bad_login(client, user.username, REMOTE_ADDR=f"10.0.0.{number}").status_code == 401
        throttled(bad_login(client, user.username, REMOTE_ADDR="10.0.0.9"))
        # The right password does not get through either while the window lasts.
        throttled(good_login(client, user.username, REMOTE_ADDR="10.0.0.10"))
        # The username is compared case-insensitively.
        throttled(good_login(client, user.username.upper(), REMOTE_ADDR="10.0.0.11"))

    def test_failed_logins_per_address_are_limited_across_usernames(self, settings, user, other_user):
        settings.JUNCTION_THROTTLE_LOGIN = "3/min"
        client = APIClient()
        for name in ("nobody1", "nobody2", "nobody3"):
            assert bad_login(client, name, REMOTE_ADDR="10.1.1.1").status_code == 401
        throttled(good_login(client, other_user.username, REMOTE_ADDR="10.1.1.1"))
        assert good_login(client, other_user.username, REMOTE_ADDR="10.1.1.2").status_code == 200

    def test_successful_logins_are_not_counted(self, settings, user):
        settings.JUNCTION_THROTTLE_LOGIN = "2/min"
        client = APIClient()
        for _ in range(5):
            assert good_login(client, user.username).status_code == 200

    def test_x_forwarded_for_is_ignored_without_trusted_proxies(self, settings, user):
        settings.JUNCTION_THROTTLE_LOGIN = "2/min"
        client = APIClient()
        for number in range(2):
            bad_login(client, f"someone{number}", HTTP_X_FORWARDED_FOR=f"192.0.2.{number}")
        throttled(bad_login(client, "someone-else", HTTP_X_FORWARDED_FOR="192.0.2.99"))

    def test_none_turns_it_off(self, settings, user):
        settings.JUNCTION_THROTTLE_LOGIN = "none"
        client = APIClient()
        for _ in range(12):
            assert bad_login(client, user.username).status_code == 401


@pytest.mark.django_db
class TestRegistrationThrottle:
    def test_registrations_per_address_are_limited(self, settings):
        settings.JUNCTION_THROTTLE_REGISTER = "2/hour"
        client = APIClient()
        for number in range(2):
            response = client.post("/api/auth/register/", {"username": f"new{number}", "email": "n@example.com",
                                                           "password": PASSWORD}, format="json")
            assert response.status_code == 201
        throttled(client.post("/api/auth/register/", {"username": "new9", "email": "n@example.com",
                                                      "password": PASSWORD}, format="json"))
        assert not User.objects.filter(username="new9").exists()
        response = client.post("/api/auth/register/", {"username": "new9", "email": "n@example.com",
                                                       "password": PASSWORD}, format="json", REMOTE_ADDR="10.2.2.2")
        assert response.status_code == 201


@pytest.mark.django_db
class TestPerUserThrottles:
    def test_trying_a_task_type(self, settings, api, other_api):
        settings.JUNCTION_THROTTLE_TASK_TEST = "2/min"
        body = {"body": {"data": {"a": 1}, "expression": "a"}}
        for _ in range(2):
            assert api.post("/api/task-types/transform/test/", body, format="json").status_code == 200
        throttled(api.post("/api/task-types/transform/test/", body, format="json"))
        assert other_api.post("/api/task-types/transform/test/", body, format="json").status_code == 200

    def test_retrying_a_session(self, settings, api, user):
        settings.JUNCTION_THROTTLE_RETRY = "1/min"
        interaction = make_interaction(user, active=True)
        failed = Session.objects.create(user=user, interaction=interaction, version=interaction.current_version,
                                        status=Session.Status.FAILED, input={"shape": {"data": {"items": [1]}}})
        assert api.post(f"/api/sessions/{failed.id}/retry/").status_code == 202
        before = Session.objects.count()
        throttled(api.post(f"/api/sessions/{failed.id}/retry/"))
        assert Session.objects.count() == before

    def test_opening_event_streams(self, settings, api, user):
        settings.JUNCTION_THROTTLE_EVENTS = "1/min"
        interaction = make_interaction(user, active=True)
        done = Session.objects.create(user=user, interaction=interaction, version=interaction.current_version,
                                      status=Session.Status.COMPLETED, input={})
        first = api.get(f"/api/sessions/{done.id}/events/")
        assert first.status_code == 200  # not read: the stream reads on a thread of its own
        throttled(api.get(f"/api/sessions/{done.id}/events/", HTTP_ACCEPT="application/json"))


DEAD_CACHE = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                          "LOCATION": "redis://127.0.0.1:1/0",
                          "OPTIONS": {"socket_timeout": 0.5, "socket_connect_timeout": 0.5}}}


@pytest.mark.django_db
class TestCacheDown:
    def test_logins_fail_closed(self, settings, user):
        settings.CACHES = DEAD_CACHE
        response = good_login(APIClient(), user.username)
        assert_error(response, 503, "service_unavailable")

    def test_per_user_throttles_fail_open(self, settings, api):
        settings.CACHES = DEAD_CACHE
        settings.JUNCTION_RATE_PLANS = {"default": "none"}
        response = api.post("/api/task-types/transform/test/", {"body": {"data": {"a": 1}, "expression": "a"}},
                            format="json")
        assert response.status_code == 200, response.content
