"""Connecting an account through a provider app: OAuth 1.0a against the fake Twitter (SPEC §2.7).

The whole dance runs through tweepy's `OAuth1UserHandler` and the fake's `request_token`,
`authorize` and `access_token`, each signature checked with oauthlib.
"""
from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from integrations.models import Integration, OAuthState
from integrations.services import integration_credentials
from tests.accounts.test_auth import assert_error
from tests.conftest import TWITTER_APP_CREDENTIALS, make_interaction
from tests.integrations.test_provider_apps import make_app

pytestmark = pytest.mark.django_db
APP_SECRET = TWITTER_APP_CREDENTIALS["consumer_secret"]


def start(api, app) -> dict:
    response = api.post(f"/api/provider-apps/{app.id}/connect/")
    assert response.status_code == 200, response.content
    return response.json()


def authorize(authorize_url: str, screen_name: str = "alice_tw", deny: bool = False) -> str:
    """The account owner approves at the fake's authorize page: the callback path it sends them to."""
    url = f"{authorize_url}&screen_name={screen_name}" + ("&deny=1" if deny else "")
    location = requests.get(url, allow_redirects=False, timeout=5).headers["Location"]
    parts = urlsplit(location)
    assert parts.path == "/api/oauth/callback/"
    return f"{parts.path}?{parts.query}"


def callback_params(callback: str) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(callback).query).items()}


def connect(api, anon, app, screen_name: str = "alice_tw"):
    """The whole dance; return the callback's response."""
    return anon.get(authorize(start(api, app)["authorize_url"], screen_name))


def secrets_of(fake_twitter) -> list[str]:
    """Every secret the dance involves: the app's, and each access token secret and request token
    secret the fake handed out."""
    return [APP_SECRET, *fake_twitter.tokens.values(), *(p["secret"] for p in fake_twitter.request_tokens.values())]


class TestConnect:
    def test_the_dance_creates_the_builders_integration_linked_to_the_app(self, api, anon, user, fake_twitter):
        app = make_app(user)
        started = start(api, app)
        assert started["authorize_url"].startswith(f"{fake_twitter.base_url}/oauth/authorize?oauth_token=rt-")
        assert len(started["state"]) >= 40
        response = anon.get(authorize(started["authorize_url"]))
        assert response.status_code == 200, response.content
        body = response.json()
        integration = Integration.objects.get(pk=body["id"])
        assert integration.user == user and integration.provider_app == app
        assert body["provider"] == "twitter" and body["provider_app"] == str(app.id)
        assert body["account"] == "@alice_tw" and body["name"] == "app @alice_tw"
        issued = fake_twitter.connected[-1]
        assert issued["screen_name"] == "alice_tw"
        assert body["credentials"] == {"access_token": issued["access_token"], "access_token_secret": "********"}

    def test_the_app_credentials_are_referenced_not_copied(self, api, anon, user, fake_twitter):
        app = make_app(user)
        integration = Integration.objects.get(pk=connect(api, anon, app).json()["id"])
        assert set(integration.config) == {"access_token"}
        issued = fake_twitter.connected[-1]["access_token"]
        assert integration_credentials(integration=integration) == {
            **TWITTER_APP_CREDENTIALS, "access_token": issued,
            "access_token_secret": fake_twitter.tokens[issued],
        }

    def test_no_secret_in_any_response_or_log_line(self, api, anon, user, fake_twitter, caplog):
        app = make_app(user)
        with caplog.at_level(logging.DEBUG):
            started = api.post(f"/api/provider-apps/{app.id}/connect/")
            callback = authorize(started.json()["authorize_url"])
            pending = {token: p["secret"] for token, p in fake_twitter.request_tokens.items()}
            responses = [started, anon.get(callback), anon.get(callback), api.get("/api/integrations/"),
                         api.get(f"/api/provider-apps/{app.id}/")]
        for secret in [*secrets_of(fake_twitter), *pending.values()]:
            for response in responses:
                assert secret not in response.content.decode()
            assert secret not in caplog.text

    def test_the_request_token_secret_is_stored_encrypted(self, api, user, fake_twitter):
        started = start(api, make_app(user))
        state = OAuthState.objects.get()
        token = parse_qs(urlsplit(started["authorize_url"]).query)["oauth_token"][0]
        assert state.request_token == token
        assert fake_twitter.request_tokens[token]["secret"] not in state.request_token_secret_encrypted
        assert started["state"] not in state.state_digest  # only its digest is kept

    def test_with_a_callback_url_the_browser_is_sent_there(self, api, anon, user):
        app = make_app(user, callback_url="https://myapp.example.com/connected?from=junction")
        response = connect(api, anon, app)
        assert response.status_code == 302
        location = urlsplit(response["Location"])
        assert (location.scheme, location.netloc, location.path) == ("https", "myapp.example.com", "/connected")
        query = parse_qs(location.query)
        integration = Integration.objects.get(user=user, provider_app=app)
        assert query == {"from": ["junction"], "integration": [str(integration.id)]}

    def test_connecting_the_same_account_again_refreshes_its_integration(self, api, anon, user, fake_twitter):
        app = make_app(user)
        first = connect(api, anon, app, "carol_tw").json()
        second = connect(api, anon, app, "carol_tw").json()
        assert first["id"] == second["id"]
        assert second["credentials"]["access_token"] == fake_twitter.connected[-1]["access_token"]
        assert first["credentials"]["access_token"] != second["credentials"]["access_token"]
        assert Integration.objects.filter(provider_app=app).count() == 1

    def test_two_accounts_make_two_integrations(self, api, anon, user):
        app = make_app(user)
        names = {connect(api, anon, app, who).json()["name"] for who in ("dave_tw", "erin_tw")}
        assert names == {"app @dave_tw", "app @erin_tw"}

    def test_another_builders_app_cannot_be_connected(self, api, other_user):
        assert_error(api.post(f"/api/provider-apps/{make_app(other_user).id}/connect/"), 404)
        assert not OAuthState.objects.exists()

    def test_starting_needs_credentials(self, anon, user):
        assert_error(anon.post(f"/api/provider-apps/{make_app(user).id}/connect/"), 401)


class TestRefusedCallbacks:
    def test_a_state_used_twice_is_400(self, api, anon, user):
        callback = authorize(start(api, make_app(user))["authorize_url"])
        assert anon.get(callback).status_code == 200
        assert_error(anon.get(callback), 400, "oauth_state_used")
        assert Integration.objects.count() == 1

    def test_a_state_older_than_ten_minutes_is_400(self, api, anon, user):
        callback = authorize(start(api, make_app(user))["authorize_url"])
        state = OAuthState.objects.get()
        OAuthState.objects.filter(pk=state.pk).update(created_at=state.created_at - timedelta(minutes=10, seconds=1))
        assert_error(anon.get(callback), 400, "oauth_state_expired")
        assert not Integration.objects.exists()

    def test_expired_states_are_deleted_by_the_next_start(self, api, user):
        app = make_app(user)
        start(api, app)
        old = OAuthState.objects.get()
        OAuthState.objects.filter(pk=old.pk).update(created_at=old.created_at - timedelta(minutes=11))
        start(api, app)
        assert not OAuthState.objects.filter(pk=old.pk).exists()
        assert OAuthState.objects.count() == 1

    def test_a_forged_state_is_400(self, api, anon, user):
        params = callback_params(authorize(start(api, make_app(user))["authorize_url"]))
        params["state"] = "forged-" + params["state"][7:]
        body = assert_error(anon.get("/api/oauth/callback/", params), 400, "oauth_state_invalid")
        assert "state" in body["details"]
        assert not Integration.objects.exists()

    def test_the_token_must_be_the_states_request_token(self, api, anon, user):
        app = make_app(user)
        mine = callback_params(authorize(start(api, app)["authorize_url"]))
        other = callback_params(authorize(start(api, app)["authorize_url"], "mallory_tw"))
        forged = {**mine, "oauth_token": other["oauth_token"], "oauth_verifier": other["oauth_verifier"]}
        assert_error(anon.get("/api/oauth/callback/", forged), 400, "oauth_token_mismatch")
        assert not Integration.objects.exists()
        # The state is spent by the forged attempt: the genuine callback cannot use it any more.
        assert_error(anon.get("/api/oauth/callback/", mine), 400, "oauth_state_used")

    def test_a_wrong_verifier_is_refused_by_the_provider(self, api, anon, user, fake_twitter):
        params = callback_params(authorize(start(api, make_app(user))["authorize_url"]))
        body = assert_error(anon.get("/api/oauth/callback/", {**params, "oauth_verifier": "guessed"}), 400,
                            "provider_refused")
        assert "access token" in body["message"]
        assert fake_twitter.rejections[-1] == "wrong or missing oauth_verifier"
        assert not Integration.objects.exists()

    def test_missing_parameters_are_named(self, anon):
        body = assert_error(anon.get("/api/oauth/callback/", {"state": "x"}), 400, "validation_error")
        assert set(body["details"]) == {"oauth_token", "oauth_verifier"}

    def test_a_declined_authorization_is_400_and_spends_the_state(self, api, anon, user):
        callback = authorize(start(api, make_app(user))["authorize_url"], deny=True)
        assert "denied=" in callback
        assert_error(anon.get(callback), 400, "oauth_denied")
        assert_error(anon.get(callback), 400, "oauth_state_used")
        assert not Integration.objects.exists()


class TestProviderProblems:
    def test_a_wrong_consumer_secret_is_400_without_the_secret(self, api, user, fake_twitter):
        from integrations import services

        app = make_app(user)
        services.provider_app_update(provider_app=app, credentials={"consumer_secret": "cs-wrong-app-secret-6"})
        response = api.post(f"/api/provider-apps/{app.id}/connect/")
        body = assert_error(response, 400, "provider_refused")
        assert body["message"] == "Twitter refused the request token request: 401 Unauthorized"
        assert "cs-wrong-app-secret-6" not in response.content.decode()
        assert fake_twitter.rejections[-1] == "signature mismatch"
        assert not OAuthState.objects.exists()

    def test_an_unreachable_provider_is_503(self, api, user, settings):
        from tests.smtp_server import free_port

        settings.JUNCTION_TWITTER_API_BASE = f"http://127.0.0.1:{free_port()}"
        assert_error(api.post(f"/api/provider-apps/{make_app(user).id}/connect/"), 503, "service_unavailable")


class TestConnectedIntegration:
    def test_its_app_fields_cannot_be_changed_on_the_integration(self, api, anon, user):
        integration_id = connect(api, anon, make_app(user)).json()["id"]
        response = api.patch(f"/api/integrations/{integration_id}/",
                             {"credentials": {"consumer_key": "ck-other"}}, format="json")
        body = assert_error(response, 400, "validation_error")
        assert set(body["details"]) == {"credentials.consumer_key"}

    def test_disconnect_deletes_the_integration(self, api, anon, user):
        integration_id = connect(api, anon, make_app(user)).json()["id"]
        assert api.delete(f"/api/integrations/{integration_id}/").status_code == 204
        assert not Integration.objects.filter(pk=integration_id).exists()
        assert_error(api.get(f"/api/integrations/{integration_id}/"), 404)

    def test_deleting_the_app_disconnects_its_accounts(self, api, anon, user):
        app = make_app(user)
        integration_id = connect(api, anon, app).json()["id"]
        assert api.delete(f"/api/provider-apps/{app.id}/").status_code == 204
        assert not Integration.objects.filter(pk=integration_id).exists()

    def test_another_builder_cannot_see_or_disconnect_it(self, api, anon, other_api, user):
        integration_id = connect(api, anon, make_app(user)).json()["id"]
        assert_error(other_api.get(f"/api/integrations/{integration_id}/"), 404)
        assert_error(other_api.delete(f"/api/integrations/{integration_id}/"), 404)
        assert Integration.objects.filter(pk=integration_id).exists()

    def test_a_trial_tweet_is_signed_with_the_new_access_token(self, api, anon, user, fake_twitter):
        integration = connect(api, anon, make_app(user), "frank_tw").json()
        text = f"Connected by OAuth {uuid.uuid4().hex[:8]}"
        result = api.post("/api/task-types/send_tweet/test/",
                          {"body": {"text": text}, "integration": integration["id"]}, format="json").json()
        assert result["status"] == "completed", result
        assert fake_twitter.calls[-1] == {"method": "POST", "path": "/2/tweets",
                                          "access_token": integration["credentials"]["access_token"]}


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_a_session_on_real_workers_tweets_with_the_connected_account(celery_workers, api, anon, user, fake_twitter):
    integration = connect(api, anon, make_app(user), "grace_tw").json()
    access_token = integration["credentials"]["access_token"]
    text = f"Shipped, says grace {uuid.uuid4().hex[:8]}"
    interaction = make_interaction(user, active=True, tasks={
        "tweet": {"type": "send_tweet", "integration": integration["id"], "body": {"text": text}},
    })
    response = api.post(f"/api/interactions/{interaction.id}/run/", {}, format="json", HTTP_PREFER="wait=30")
    session = response.json()
    assert session["status"] == "completed", session
    tweet = session["tasks"]["tweet"]["output"]
    assert {"id": tweet["id"], "text": text, "access_token": access_token} in fake_twitter.tweets
    for secret in secrets_of(fake_twitter):
        assert secret not in response.content.decode()
