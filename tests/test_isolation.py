"""Isolation between users over every route (SPEC 2.1): another user's object is a 404 with the
error shape, never a 403 or a 200; lists never contain it; nothing of it changes."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass

import pytest
from django.urls import get_resolver

from accounts import app_services
from accounts import services as account_services
from accounts.models import ApiKey, App
from integrations import services as integration_services
from integrations.models import Integration, OAuthState, ProviderApp
from interactions.models import Interaction, Session
from tests.conftest import (
    SIMPLE_TASKS,
    TWITTER_APP_CREDENTIALS,
    end_user_client,
    make_end_user,
    make_integration,
    make_interaction,
)


@dataclass
class Objects:
    interaction: Interaction
    integration: Integration
    api_key: ApiKey
    session: Session
    app: App
    provider_app: ProviderApp


def objects_of(user) -> Objects:
    integration = make_integration(user, name="shared-name")
    interaction = make_interaction(user, name="shared-name", active=True)
    session = Session.objects.create(
        user=user, interaction=interaction, version=interaction.current_version,
        status=Session.Status.COMPLETED, input={},
    )
    api_key = account_services.api_key_create(user=user, name="shared-name").api_key
    app = app_services.app_create(owner=user, name="shared-name", slug=f"app-of-{user.username}")
    provider_app = integration_services.provider_app_create(
        user=user, name="shared-name", provider="twitter", credentials=dict(TWITTER_APP_CREDENTIALS))
    return Objects(interaction=interaction, integration=integration, api_key=api_key, session=session, app=app,
                   provider_app=provider_app)


@pytest.fixture
def theirs(other_user) -> Objects:
    return objects_of(other_user)


@pytest.fixture
def mine(user) -> Objects:
    return objects_of(user)


# (method, path, kind of object, body): every route that takes an object id.
OBJECT_ROUTES = [
    ("get", "/api/interactions/{id}/", "interaction", None),
    ("put", "/api/interactions/{id}/", "interaction", {"name": "stolen", "tasks": SIMPLE_TASKS}),
    ("patch", "/api/interactions/{id}/", "interaction", {"name": "stolen"}),
    ("delete", "/api/interactions/{id}/", "interaction", None),
    ("post", "/api/interactions/{id}/activate/", "interaction", None),
    ("post", "/api/interactions/{id}/deactivate/", "interaction", None),
    ("get", "/api/interactions/{id}/versions/", "interaction", None),
    ("get", "/api/interactions/{id}/endpoint/", "interaction", None),
    ("get", "/api/interactions/{id}/plan/", "interaction", None),
    ("post", "/api/interactions/{id}/run/", "interaction", {"shape": {"data": {"items": [1]}}}),
    ("get", "/api/integrations/{id}/", "integration", None),
    ("patch", "/api/integrations/{id}/", "integration", {"name": "stolen"}),
    ("patch", "/api/integrations/{id}/", "integration", {"credentials": {"consumer_key": "stolen"}}),
    ("delete", "/api/integrations/{id}/", "integration", None),
    ("get", "/api/provider-apps/{id}/", "provider_app", None),
    ("patch", "/api/provider-apps/{id}/", "provider_app", {"name": "stolen"}),
    ("patch", "/api/provider-apps/{id}/", "provider_app", {"credentials": {"consumer_secret": "stolen-secret"}}),
    ("delete", "/api/provider-apps/{id}/", "provider_app", None),
    ("post", "/api/provider-apps/{id}/connect/", "provider_app", None),
    ("get", "/api/auth/api-keys/{id}/", "api_key", None),
    ("delete", "/api/auth/api-keys/{id}/", "api_key", None),
    ("get", "/api/sessions/{id}/", "session", None),
    ("post", "/api/sessions/{id}/cancel/", "session", None),
    ("post", "/api/sessions/{id}/retry/", "session", None),
    ("get", "/api/sessions/{id}/events/", "session", None),
    ("get", "/api/apps/{id}/", "app", None),
    ("patch", "/api/apps/{id}/", "app", {"name": "stolen", "signup": "open"}),
    ("delete", "/api/apps/{id}/", "app", None),
]
LIST_ROUTES = {
    "interaction": "/api/interactions/",
    "integration": "/api/integrations/",
    "api_key": "/api/auth/api-keys/",
    "session": "/api/sessions/",
    "app": "/api/apps/",
    "provider_app": "/api/provider-apps/",
}


def _api_routes() -> set[tuple[str, str]]:
    """Every (method, path pattern) of a route with a `pk`, from the URL resolver."""
    found: set[tuple[str, str]] = set()

    def walk(patterns, prefix: str) -> None:
        for pattern in patterns:
            if hasattr(pattern, "url_patterns"):
                walk(pattern.url_patterns, prefix + str(pattern.pattern))
                continue
            actions = getattr(pattern.callback, "actions", None)
            path = prefix + str(pattern.pattern)
            # An unnamed route is a slash-less twin (config/routing.py): the same view.
            if actions and "(?P<pk>" in path and pattern.name is not None:
                cls = pattern.callback.cls
                allowed = set(cls.http_method_names) - {"head", "options"}  # head mirrors get
                path = "/" + re.sub(r"\^|\$|\(\?P<pk>[^)]*\)", lambda m: "{id}" if m.group().startswith("(") else "",
                                    path)
                found.update((method, path) for method in actions if method in allowed)

    walk(get_resolver().url_patterns, "")
    return found


def test_every_object_route_is_covered():
    covered = {(method, path) for method, path, _, _ in OBJECT_ROUTES}
    missing = _api_routes() - covered
    assert not missing, f"add these routes to OBJECT_ROUTES: {sorted(missing)}"


def _json(response) -> dict:
    return json.loads(b"".join(response.streaming_content) if response.streaming else response.content)


@pytest.mark.django_db
@pytest.mark.parametrize("method,path,kind,body", OBJECT_ROUTES,
                         ids=[f"{m} {p} {b and next(iter(b))}" for m, p, _, b in OBJECT_ROUTES])
def test_another_users_object_is_404(api, theirs, method, path, kind, body):
    target = getattr(theirs, kind)
    sessions_before = Session.objects.count()
    url = path.format(id=target.id)
    response = getattr(api, method)(url, body, format="json", HTTP_ACCEPT="application/json")
    assert response.status_code == 404, (url, response.status_code)
    error = _json(response)
    assert set(error) == {"code", "message", "details"} and error["code"] == "not_found"
    assert str(target.id) not in error["message"]
    # Nothing of theirs changed, and nothing was started.
    assert Session.objects.count() == sessions_before
    interaction = Interaction.objects.get(id=theirs.interaction.id)
    assert interaction.name == "shared-name" and interaction.is_active
    assert interaction.current_version.number == 1
    integration = Integration.objects.get(id=theirs.integration.id)
    assert integration.name == "shared-name" and integration.config["consumer_key"] == "ck-public"
    assert ApiKey.objects.get(id=theirs.api_key.id).revoked_at is None
    assert Session.objects.get(id=theirs.session.id).status == Session.Status.COMPLETED
    app = App.objects.get(id=theirs.app.id)
    assert app.name == "shared-name" and app.signup == App.Signup.INVITE
    provider_app = ProviderApp.objects.get(id=theirs.provider_app.id)
    assert provider_app.name == "shared-name"
    assert integration_services.provider_app_credentials(provider_app=provider_app) == TWITTER_APP_CREDENTIALS
    assert not OAuthState.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("kind", list(LIST_ROUTES))
def test_lists_never_contain_another_users_objects(api, mine, theirs, kind):
    response = api.get(LIST_ROUTES[kind])
    assert response.status_code == 200
    ids = {item["id"] for item in response.json()["results"]}
    assert ids == {str(getattr(mine, kind).id)}


@pytest.mark.django_db
def test_filtering_by_another_users_interaction_finds_nothing(api, mine, theirs):
    body = api.get(f"/api/sessions/?interaction={theirs.interaction.id}").json()
    assert body["count"] == 0
    body = api.get("/api/interactions/?name=shared-name").json()
    assert [item["id"] for item in body["results"]] == [str(mine.interaction.id)]


@pytest.mark.django_db
def test_own_objects_are_reachable_on_the_same_routes(api, mine):
    """The 404s above come from ownership, not from broken routes."""
    for method, path, kind, body in OBJECT_ROUTES:
        if method != "get" or path.endswith("/events/"):
            continue
        url = path.format(id=getattr(mine, kind).id)
        assert api.get(url).status_code == 200, url


@pytest.mark.django_db
class TestForeignIntegrations:
    def _tweet(self, integration):
        return {"t": {"type": "send_tweet", "integration": str(integration.id), "body": {"text": "hi"}}}

    def test_create_with_another_users_integration_is_rejected(self, api, other_user):
        theirs = make_integration(other_user)
        response = api.post("/api/interactions/", {"name": "x", "tasks": self._tweet(theirs)}, format="json")
        assert response.status_code == 400
        assert "tasks.t.integration" in response.json()["details"]
        assert not Interaction.objects.filter(name="x").exists()

    def test_update_to_another_users_integration_is_rejected(self, api, user, other_user):
        mine = make_interaction(user)
        theirs = make_integration(other_user)
        for method in ("put", "patch"):
            response = getattr(api, method)(f"/api/interactions/{mine.id}/",
                                            {"name": mine.name, "tasks": self._tweet(theirs)}, format="json")
            assert response.status_code == 400, method
            assert "tasks.t.integration" in response.json()["details"]
        assert Interaction.objects.get(id=mine.id).current_version.number == 1

    def test_trying_a_task_with_another_users_integration_is_rejected(self, api, other_user):
        theirs = make_integration(other_user)
        response = api.post("/api/task-types/send_tweet/test/",
                            {"body": {"text": "hi"}, "integration": str(theirs.id)}, format="json")
        assert response.status_code == 400
        assert "integration" in response.json()["details"]


@pytest.mark.django_db
def test_api_key_acts_only_for_its_owner(api, other_api, theirs, mine):
    from rest_framework.test import APIClient

    key = other_api.post("/api/auth/api-keys/", {"name": "k"}, format="json").json()["key"]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    assert client.get(f"/api/interactions/{mine.interaction.id}/").status_code == 404
    assert client.get(f"/api/interactions/{theirs.interaction.id}/").status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize("method,path,kind,body", OBJECT_ROUTES,
                         ids=[f"{m} {p} {b and next(iter(b))}" for m, p, _, b in OBJECT_ROUTES])
def test_anonymous_is_401_on_every_object_route(anon, theirs, method, path, kind, body):
    response = getattr(anon, method)(path.format(id=getattr(theirs, kind).id), body, format="json",
                                     HTTP_ACCEPT="application/json")
    assert response.status_code == 401
    error = _json(response)
    assert set(error) == {"code", "message", "details"} and error["code"] == "not_authenticated"
    assert Session.objects.count() == 1
    assert Interaction.objects.get(id=theirs.interaction.id).name == "shared-name"


@pytest.mark.django_db
def test_an_end_user_cannot_connect_through_another_builders_provider_app(mine, theirs):
    """`POST /api/apps/{slug}/connect/{provider_app_id}/`: only the provider apps of the builder who
    owns the end user's app; another builder's is 404, and nothing is started (issue 10)."""
    client = end_user_client(make_end_user(mine.app))
    response = client.post(f"/api/apps/{mine.app.slug}/connect/{theirs.provider_app.id}/")
    assert response.status_code == 404
    error = _json(response)
    assert set(error) == {"code", "message", "details"} and error["code"] == "not_found"
    assert str(theirs.provider_app.id) not in error["message"]
    assert not OAuthState.objects.exists()
    # …nor through their app's slug, with a token of mine (401), nor theirs through mine (404).
    assert client.post(f"/api/apps/{theirs.app.slug}/connect/{theirs.provider_app.id}/").status_code == 401
    their_client = end_user_client(make_end_user(theirs.app))
    assert their_client.post(f"/api/apps/{theirs.app.slug}/connect/{mine.provider_app.id}/").status_code == 404
    assert not OAuthState.objects.exists()
