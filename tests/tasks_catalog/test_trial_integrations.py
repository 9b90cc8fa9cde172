"""`POST /api/task-types/{type}/test/` for the outward-facing types, with their integrations."""
from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.accounts.test_auth import assert_error
from tests.conftest import SMTP_CREDENTIALS, TWITTER_CREDENTIALS, make_integration, smtp_integration

pytestmark = pytest.mark.django_db
SECRETS = [TWITTER_CREDENTIALS["consumer_secret"], TWITTER_CREDENTIALS["access_token_secret"], SMTP_CREDENTIALS["password"]]


def try_type(api, type_key: str, body: dict, integration=None):
    payload: dict[str, Any] = {"body": body}
    if integration is not None:
        payload["integration"] = str(integration.id)
    response = api.post(f"/api/task-types/{type_key}/test/", payload, format="json")
    for secret in SECRETS:
        assert secret not in response.content.decode()
    return response


class TestHttpRequest:
    def test_completes_with_the_response(self, api, local_http):
        response = try_type(api, "http_request", {"url": local_http.url("/echo"), "query": {"q": "1"}})
        assert response.status_code == 200
        result = response.json()
        assert result["status"] == "completed" and result["error"] is None
        assert result["output"]["status_code"] == 200
        assert result["output"]["body"]["query"] == {"q": ["1"]}
        assert isinstance(result["duration_ms"], int)

    def test_a_refused_address_is_a_failed_result(self, api, local_http, settings):
        settings.JUNCTION_SSRF_ALLOWED_NETWORKS = []
        result = try_type(api, "http_request", {"url": local_http.url("/echo")}).json()
        assert result["status"] == "failed" and result["output"] is None
        assert result["error"].startswith("refused to connect to 127.0.0.1: loopback address")
        assert local_http.requests == []

    def test_a_404_is_a_failed_result(self, api, local_http):
        result = try_type(api, "http_request", {"url": local_http.url("/status/404")}).json()
        assert result["status"] == "failed"
        assert "answered 404" in result["error"]

    def test_takes_no_integration(self, api, user, local_http):
        response = try_type(api, "http_request", {"url": local_http.url("/echo")}, make_integration(user, "twitter"))
        body = assert_error(response, 400, "validation_error")
        assert "integration" in body["details"]


class TestSendTweet:
    def test_posts_the_tweet(self, api, user, fake_twitter):
        text = f"Tried from the catalog {uuid.uuid4().hex[:8]}"
        result = try_type(api, "send_tweet", {"text": text}, make_integration(user, "twitter")).json()
        assert result["status"] == "completed", result
        assert result["output"]["text"] == text
        assert any(t["id"] == result["output"]["id"] for t in fake_twitter.tweets)

    def test_bad_credentials_are_a_failed_result(self, api, user):
        integration = make_integration(user, "twitter", access_token_secret="ats-wrong-secret-7")
        result = try_type(api, "send_tweet", {"text": f"nope {uuid.uuid4().hex[:8]}"}, integration).json()
        assert result["status"] == "failed"
        assert result["error"] == "Twitter rejected the integration's credentials: 401 Unauthorized: Unauthorized"
        assert "ats-wrong-secret-7" not in result["error"]

    def test_needs_an_integration(self, api):
        body = assert_error(try_type(api, "send_tweet", {"text": "hi"}), 400, "validation_error")
        assert "twitter" in body["details"]["integration"][0]

    def test_needs_an_integration_of_its_provider(self, api, user, smtp_server):
        response = try_type(api, "send_tweet", {"text": "hi"}, smtp_integration(user, smtp_server))
        body = assert_error(response, 400, "validation_error")
        assert "'smtp', not 'twitter'" in body["details"]["integration"][0]

    def test_another_users_integration_is_refused(self, api, other_user):
        response = try_type(api, "send_tweet", {"text": "hi"}, make_integration(other_user, "twitter"))
        assert_error(response, 400, "validation_error")

    def test_a_too_long_text_is_refused_before_running(self, api, user, fake_twitter):
        before = fake_twitter.request_count
        response = try_type(api, "send_tweet", {"text": "x" * 281}, make_integration(user, "twitter"))
        body = assert_error(response, 400, "validation_error")
        assert "body.text" in body["details"]
        assert fake_twitter.request_count == before


class TestSendEmail:
    def test_sends_the_message(self, api, user, smtp_server):
        body = {"to": "ops@example.com", "subject": "Trial", "text": "plain", "html": "<i>rich</i>"}
        result = try_type(api, "send_email", body, smtp_integration(user, smtp_server)).json()
        assert result["status"] == "completed", result
        [message] = smtp_server.messages
        assert result["output"] == {"message_id": message["Message-ID"]}
        assert message["Subject"] == "Trial"

    def test_a_refused_login_is_a_failed_result(self, api, user, smtp_server):
        integration = smtp_integration(user, smtp_server, password="smtp-wrong-secret-6")
        result = try_type(api, "send_email", {"to": "ops@example.com", "subject": "x"}, integration).json()
        assert result["status"] == "failed"
        assert "rejected the login: 535" in result["error"]
        assert "smtp-wrong-secret-6" not in result["error"]

    def test_needs_its_required_fields(self, api, user, smtp_server):
        response = try_type(api, "send_email", {"to": "ops@example.com"}, smtp_integration(user, smtp_server))
        body = assert_error(response, 400, "validation_error")
        assert "body.subject" in body["details"]
        assert smtp_server.messages == []
