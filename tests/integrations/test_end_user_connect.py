"""An end user connects their own account through the builder's provider app (issue 10 item 4,
SPEC §2.7 `POST /api/apps/{slug}/connect/{provider_app_id}/`).

The whole OAuth 1.0a dance runs against the fake Twitter, which checks every signature; the
tweets signed with the connected account are in tests/interactions/test_end_user_tweets.py.
"""
from __future__ import annotations

import uuid
from urllib.parse import parse_qs, urlsplit

import pytest
from rest_framework.test import APIClient

from accounts import services as account_services
from integrations.models import Integration, OAuthState
from integrations.services import integration_credentials
from tests.accounts.test_auth import assert_error
from tests.conftest import TWITTER_APP_CREDENTIALS, end_user_client, make_app, make_end_user
from tests.integrations.test_connect import authorize, secrets_of
from tests.integrations.test_connect import connect as builder_connect
from tests.integrations.test_provider_apps import make_app as make_provider_app

pytestmark = pytest.mark.django_db


@pytest.fixture
def birds(user):
    """Alice's app `birds` and her Twitter provider app."""
    return make_app(user, slug="birds"), make_provider_app(user)


def start(client, app, provider_app):
    return client.post(f"/api/apps/{app.slug}/connect/{provider_app.id}/")


def connect(end_user, provider_app, screen_name: str = "ann_tw"):
    """The end user's whole dance: start with their token, approve at the fake, come back to the
    callback (which needs no credentials); return the callback's response."""
    started = start(end_user_client(end_user), end_user.app, provider_app)
    assert started.status_code == 200, started.content
    return APIClient().get(authorize(started.json()["authorize_url"], screen_name))


def listed(end_user) -> list[dict]:
    response = end_user_client(end_user).get(f"/api/apps/{end_user.app.slug}/integrations/")
    assert response.status_code == 200, response.content
    return response.json()["results"]


class TestConnect:
    def test_the_dance_creates_the_end_users_own_integration(self, user, birds, fake_twitter):
        app, provider_app = birds
        ann = make_end_user(app)
        started = start(end_user_client(ann), app, provider_app)
        assert started.status_code == 200, started.content
        assert started.json()["authorize_url"].startswith(f"{fake_twitter.base_url}/oauth/authorize?oauth_token=rt-")
        state = OAuthState.objects.get()
        assert (state.end_user, state.user, state.provider_app) == (ann, user, provider_app)

        response = APIClient().get(authorize(started.json()["authorize_url"], "ann_tw"))
        assert response.status_code == 200, response.content
        body = response.json()
        integration = Integration.objects.get(pk=body["id"])
        assert integration.end_user == ann and integration.user == user and integration.provider_app == provider_app
        assert body["account"] == "@ann_tw" and body["name"] == "app @ann_tw" and body["provider"] == "twitter"
        issued = fake_twitter.connected[-1]
        assert body["credentials"] == {"access_token": issued["access_token"], "access_token_secret": "********"}
        assert integration_credentials(integration=integration) == {
            **TWITTER_APP_CREDENTIALS, "access_token": issued["access_token"],
            "access_token_secret": fake_twitter.tokens[issued["access_token"]],
        }

    def test_it_is_listed_for_that_end_user_and_nowhere_else(self, api, user, birds):
        app, provider_app = birds
        ann, ben = make_end_user(app), make_end_user(app)
        created = connect(ann, provider_app).json()
        assert [item["id"] for item in listed(ann)] == [created["id"]]
        assert listed(ben) == []
        assert api.get("/api/integrations/").json()["results"] == []
        assert_error(api.get(f"/api/integrations/{created['id']}/"), 404)
        assert_error(end_user_client(ben).get(f"/api/apps/birds/integrations/{created['id']}/"), 404)
        assert end_user_client(ann).get(f"/api/apps/birds/integrations/{created['id']}/").status_code == 200

    def test_two_end_users_connecting_one_account_get_two_integrations(self, birds, fake_twitter):
        app, provider_app = birds
        ann, ben = make_end_user(app), make_end_user(app)
        for_ann = connect(ann, provider_app, "shared_tw").json()
        for_ben = connect(ben, provider_app, "shared_tw").json()
        assert for_ann["id"] != for_ben["id"]
        assert for_ann["name"] == for_ben["name"] == "app @shared_tw"  # names are unique per end user
        assert Integration.objects.get(pk=for_ann["id"]).end_user == ann
        assert Integration.objects.get(pk=for_ben["id"]).end_user == ben
        assert for_ann["credentials"]["access_token"] != for_ben["credentials"]["access_token"]
        assert [item["id"] for item in listed(ann)] == [for_ann["id"]]
        assert [item["id"] for item in listed(ben)] == [for_ben["id"]]

    def test_the_builder_connecting_the_same_account_keeps_their_own(self, api, anon, user, birds):
        app, provider_app = birds
        ann = make_end_user(app)
        hers = connect(ann, provider_app, "shared_tw").json()
        builders = builder_connect(api, anon, provider_app, "shared_tw").json()
        assert hers["id"] != builders["id"]
        assert Integration.objects.get(pk=builders["id"]).end_user is None
        assert [item["id"] for item in api.get("/api/integrations/").json()["results"]] == [builders["id"]]
        assert [item["id"] for item in listed(ann)] == [hers["id"]]

    def test_connecting_again_refreshes_the_end_users_integration(self, birds, fake_twitter):
        app, provider_app = birds
        ann = make_end_user(app)
        first = connect(ann, provider_app, "ann_tw").json()
        second = connect(ann, provider_app, "ann_tw").json()
        assert first["id"] == second["id"]
        assert second["credentials"]["access_token"] == fake_twitter.connected[-1]["access_token"]
        assert first["credentials"]["access_token"] != second["credentials"]["access_token"]
        assert Integration.objects.filter(end_user=ann).count() == 1

    def test_a_second_account_gets_a_second_integration(self, birds):
        app, provider_app = birds
        ann = make_end_user(app)
        names = {connect(ann, provider_app, who).json()["name"] for who in ("ann_tw", "ann_work_tw")}
        assert names == {"app @ann_tw", "app @ann_work_tw"}

    def test_with_a_callback_url_the_end_users_browser_is_sent_there(self, user):
        app = make_app(user, slug="birds")
        provider_app = make_provider_app(user, name="with-page", callback_url="https://birds.example/connected?x=1")
        ann = make_end_user(app)
        response = connect(ann, provider_app)
        assert response.status_code == 302
        location = urlsplit(response["Location"])
        integration = Integration.objects.get(end_user=ann)
        assert (location.netloc, location.path) == ("birds.example", "/connected")
        assert parse_qs(location.query) == {"x": ["1"], "integration": [str(integration.id)]}

    def test_disconnect_deletes_it(self, birds):
        app, provider_app = birds
        ann = make_end_user(app)
        created = connect(ann, provider_app).json()
        response = end_user_client(ann).delete(f"/api/apps/birds/integrations/{created['id']}/")
        assert response.status_code == 204
        assert not Integration.objects.filter(pk=created["id"]).exists()
        assert listed(ann) == []

    def test_no_secret_in_any_response(self, birds, fake_twitter):
        app, provider_app = birds
        ann = make_end_user(app)
        client = end_user_client(ann)
        started = start(client, app, provider_app)
        callback = authorize(started.json()["authorize_url"])
        pending = [p["secret"] for p in fake_twitter.request_tokens.values()]
        responses = [started, APIClient().get(callback), APIClient().get(callback),
                     client.get("/api/apps/birds/integrations/")]
        for secret in [*secrets_of(fake_twitter), *pending]:
            for response in responses:
                assert secret not in response.content.decode()

    def test_an_end_user_disabled_during_the_dance_connects_nothing(self, birds):
        app, provider_app = birds
        ann = make_end_user(app)
        started = start(end_user_client(ann), app, provider_app).json()
        ann.is_active = False
        ann.save(update_fields=["is_active"])
        assert_error(APIClient().get(authorize(started["authorize_url"])), 400, "oauth_state_invalid")
        assert not Integration.objects.filter(end_user=ann).exists()

    def test_deleting_the_end_user_deletes_their_dances_in_progress(self, birds):
        app, provider_app = birds
        ann = make_end_user(app)
        started = start(end_user_client(ann), app, provider_app).json()
        ann.delete()
        assert not OAuthState.objects.exists()
        assert_error(APIClient().get(authorize(started["authorize_url"])), 400, "oauth_state_invalid")


class TestIsolation:
    def test_another_builders_provider_app_is_404(self, birds, other_user):
        app, _ = birds
        theirs = make_provider_app(other_user, name="theirs")
        assert_error(start(end_user_client(make_end_user(app)), app, theirs), 404, "not_found")
        assert not OAuthState.objects.exists()

    def test_an_unknown_provider_app_is_404(self, birds):
        app, _ = birds
        response = end_user_client(make_end_user(app)).post(f"/api/apps/birds/connect/{uuid.uuid4()}/")
        assert_error(response, 404, "not_found")

    def test_the_end_user_of_another_builders_app_cannot_use_this_builders_app(self, birds, other_user):
        _, provider_app = birds
        their_app = make_app(other_user, slug="theirs")
        assert_error(start(end_user_client(make_end_user(their_app)), their_app, provider_app), 404)
        assert not OAuthState.objects.exists()

    def test_another_apps_end_user_is_401(self, user, birds):
        app, provider_app = birds
        blog = make_app(user, slug="blog")  # the same builder's other app
        response = start(end_user_client(make_end_user(blog)), app, provider_app)
        assert_error(response, 401, "wrong_app")
        assert not OAuthState.objects.exists()

    def test_builder_credentials_and_none_are_401(self, api, user, birds):
        app, provider_app = birds
        with_key = APIClient()
        with_key.credentials(HTTP_AUTHORIZATION=f"Api-Key {account_services.api_key_create(user=user, name='k').key}")
        for client in (api, with_key, APIClient()):
            assert_error(start(client, app, provider_app), 401)
        assert not OAuthState.objects.exists()

    def test_an_end_users_token_is_401_on_the_builders_connect(self, birds):
        app, provider_app = birds
        client = end_user_client(make_end_user(app))
        assert_error(client.post(f"/api/provider-apps/{provider_app.id}/connect/"), 401)
        assert not OAuthState.objects.exists()
