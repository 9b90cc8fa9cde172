"""API key scopes, limits, expiry and last use (docs/security.md)."""
from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from accounts import services as account_services
from accounts.models import ApiKey
from interactions.models import Session
from tests.conftest import make_interaction
from tests.test_hostile_input import ROUTES, concrete, route_objects

RUN_BODY = {"shape": {"data": {"items": [1]}}}
# What a run key may reach: (method, path pattern suffix).
RUN_KEY_PATHS = {
    ("post", "/api/interactions/{id}/run/"),
    ("get", "/api/sessions/"),
    ("get", "/api/sessions/{id}/"),
    ("get", "/api/sessions/{id}/events/"),
}


def _shape(path: str) -> str:
    return re.sub(r"\(\?P<pk>[^)]*\)", "{id}", path)


RUN_KEY_ROUTES = {(method, path) for method, path in ROUTES if (method, _shape(path)) in RUN_KEY_PATHS}
# Routes that take no credentials at all (they are the way to get some), the public schema, and
# the OAuth callback (its state is the credential: docs/providers.md).
CREDENTIAL_FREE = {"/api/auth/register/", "/api/auth/login/", "/api/auth/refresh/", "/api/auth/logout/",
                   "/api/schema/", "/api/docs/", "/api/oauth/callback/"}
# End users' routes take no builder credentials at all: an API key is 401 there
# (tests/accounts/test_end_users.py).
END_USER_ROUTES = {path for _, path in ROUTES if "<slug:slug>" in path}


def key_client(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    return client


def _json(response) -> dict:
    return json.loads(b"".join(response.streaming_content) if response.streaming else response.content)


@pytest.fixture
def objects(user):
    return route_objects(user)


def run_key(user, **options) -> str:
    return account_services.api_key_create(user=user, name="runner", scope="run", **options).key


@pytest.mark.django_db
class TestRunKeyEverywhere:
    def test_the_allowed_routes_exist(self):
        assert len(RUN_KEY_ROUTES) == len(RUN_KEY_PATHS)

    @pytest.mark.parametrize("method,path", [r for r in ROUTES if r not in RUN_KEY_ROUTES
                                             and r[1] not in CREDENTIAL_FREE | END_USER_ROUTES],
                             ids=lambda v: v)
    def test_a_run_key_is_403_on_every_other_route(self, user, objects, method, path):
        client = key_client(run_key(user))
        keys_before = ApiKey.objects.count()
        response = getattr(client, method)(concrete(path, objects), {"name": "x"}, format="json",
                                           HTTP_ACCEPT="application/json")
        assert response.status_code == 403, (method, path, response.status_code)
        error = _json(response)
        assert set(error) == {"code", "message", "details"} and error["code"] == "insufficient_scope"
        assert ApiKey.objects.count() == keys_before  # no key minted, none revoked
        assert ApiKey.objects.filter(revoked_at__isnull=False).count() == 0

    @pytest.mark.parametrize("method,path", sorted(RUN_KEY_ROUTES))
    def test_a_full_key_and_a_run_key_reach_the_run_routes(self, user, objects, method, path):
        for key in (run_key(user), account_services.api_key_create(user=user, name="full").key):
            response = getattr(key_client(key), method)(concrete(path, objects), RUN_BODY if method == "post" else None,
                                                        format="json")
            assert response.status_code in (200, 202), (method, path, response.status_code)

    def test_a_run_key_sees_the_sessions_of_its_interactions(self, user, objects):
        client = key_client(run_key(user))
        started = client.post(f"/api/interactions/{objects['interaction'].id}/run/", RUN_BODY, format="json")
        assert started.status_code in (200, 202)
        listed = {item["id"] for item in client.get("/api/sessions/").json()["results"]}
        assert {str(objects["session"].id), started.json()["id"]} <= listed


@pytest.mark.django_db
class TestLimitedRunKey:
    def test_it_runs_only_its_interactions(self, user, objects):
        other = make_interaction(user, active=True)
        client = key_client(run_key(user, interactions=[objects["interaction"].id]))
        allowed = client.post(f"/api/interactions/{objects['interaction'].id}/run/", RUN_BODY, format="json")
        assert allowed.status_code in (200, 202), allowed.content
        before = Session.objects.count()
        refused = client.post(f"/api/interactions/{other.id}/run/", RUN_BODY, format="json")
        assert refused.status_code == 404 and refused.json()["code"] == "not_found"
        assert Session.objects.count() == before

    def test_it_sees_only_the_sessions_of_its_interactions(self, user, objects):
        other = make_interaction(user, active=True)
        theirs = Session.objects.create(user=user, interaction=other, version=other.current_version,
                                        status=Session.Status.COMPLETED, input={})
        client = key_client(run_key(user, interactions=[objects["interaction"].id]))
        listed = {item["id"] for item in client.get("/api/sessions/").json()["results"]}
        assert listed == {str(objects["session"].id)}
        assert client.get(f"/api/sessions/{theirs.id}/").status_code == 404
        assert client.get(f"/api/sessions/{objects['session'].id}/").status_code == 200

    def test_a_limited_key_whose_interactions_are_gone_runs_nothing(self, user, objects):
        doomed = make_interaction(user, active=True)
        client = key_client(run_key(user, interactions=[doomed.id]))
        doomed.delete()
        response = client.post(f"/api/interactions/{objects['interaction'].id}/run/", RUN_BODY, format="json")
        assert response.status_code == 404
        assert client.get("/api/sessions/").json()["count"] == 0

    def test_another_users_interactions_cannot_be_chosen(self, api, other_user):
        theirs = make_interaction(other_user, active=True)
        response = api.post("/api/auth/api-keys/", {"name": "k", "scope": "run", "interactions": [str(theirs.id)]},
                            format="json")
        assert response.status_code == 400 and "interactions" in response.json()["details"]
        assert not ApiKey.objects.filter(name="k").exists()

    def test_a_full_key_cannot_be_limited(self, api, objects):
        response = api.post("/api/auth/api-keys/", {"name": "k", "interactions": [str(objects["interaction"].id)]},
                            format="json")
        assert response.status_code == 400 and "interactions" in response.json()["details"]

    def test_another_users_run_key_reaches_nothing_of_mine(self, objects, other_user):
        client = key_client(run_key(other_user))
        assert client.post(f"/api/interactions/{objects['interaction'].id}/run/", RUN_BODY,
                           format="json").status_code == 404
        assert client.get(f"/api/sessions/{objects['session'].id}/").status_code == 404
        assert client.get("/api/sessions/").json()["count"] == 0


@pytest.mark.django_db
class TestKeyLifecycle:
    def test_created_key_shows_scope_limit_and_expiry(self, api, objects):
        expires = (timezone.now() + timedelta(days=1)).isoformat()
        body = api.post("/api/auth/api-keys/", {"name": "k", "scope": "run", "expires_at": expires,
                                                "interactions": [str(objects["interaction"].id)]},
                        format="json").json()
        assert body["scope"] == "run" and body["interactions"] == [str(objects["interaction"].id)]
        assert body["expires_at"] and body["last_used_at"] is None and body["key"]
        listed = api.get(f"/api/auth/api-keys/{body['id']}/").json()
        assert listed["scope"] == "run" and "key" not in listed

    def test_a_key_defaults_to_full_and_unlimited(self, api):
        body = api.post("/api/auth/api-keys/", {"name": "k"}, format="json").json()
        assert body["scope"] == "full" and body["interactions"] is None and body["expires_at"] is None

    def test_an_expiry_in_the_past_is_400(self, api):
        response = api.post("/api/auth/api-keys/", {"name": "k", "expires_at": "2000-01-01T00:00:00Z"},
                            format="json")
        assert response.status_code == 400 and "expires_at" in response.json()["details"]

    def test_an_expired_key_is_401(self, user):
        created = account_services.api_key_create(user=user, name="k", expires_at=timezone.now() + timedelta(days=1))
        client = key_client(created.key)
        assert client.get("/api/auth/me/").status_code == 200
        ApiKey.objects.filter(pk=created.api_key.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
        response = client.get("/api/auth/me/")
        assert response.status_code == 401 and set(response.json()) == {"code", "message", "details"}

    def test_last_used_is_recorded_at_most_once_a_minute(self, user, django_assert_max_num_queries):
        created = account_services.api_key_create(user=user, name="k")
        client = key_client(created.key)
        client.get("/api/auth/me/")
        first = ApiKey.objects.get(pk=created.api_key.pk).last_used_at
        assert first is not None
        client.get("/api/auth/me/")
        assert ApiKey.objects.get(pk=created.api_key.pk).last_used_at == first  # not written again
        with django_assert_max_num_queries(1):  # the key lookup only: no write while fresh
            client.get("/api/auth/me/")
        stale = timezone.now() - timedelta(minutes=2)
        ApiKey.objects.filter(pk=created.api_key.pk).update(last_used_at=stale)
        client.get("/api/auth/me/")
        assert ApiKey.objects.get(pk=created.api_key.pk).last_used_at > stale
