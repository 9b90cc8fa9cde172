"""The `send_tweet` task type: tweepy against the fake Twitter API (OAuth 1.0a verified)."""
from __future__ import annotations

import uuid

import pytest

from interactions.executor import run_with_body
from tasks_catalog.base import TaskFailed
from tasks_catalog.registry import task_types
from tests.conftest import TWITTER_CREDENTIALS, make_integration, make_interaction

pytestmark = pytest.mark.django_db


def unique(text: str = "Order shipped") -> str:
    return f"{text} {uuid.uuid4().hex[:8]}"


def tweet(user, text: str, **credentials):
    integration = make_integration(user, "twitter", **credentials)
    return run_with_body(
        task_type=task_types.get("send_tweet"), body={"text": text},
        integration_id=str(integration.id), user_id=user.id, timeout=10,
    )


def failure(user, text: str, **credentials) -> TaskFailed:
    with pytest.raises(TaskFailed) as caught:
        tweet(user, text, **credentials)
    return caught.value


def test_posts_a_signed_tweet_and_returns_it(user, fake_twitter):
    text = unique()
    output = tweet(user, text)
    assert output == {"id": output["id"], "text": text}
    assert output["id"].isdigit()
    assert {"id": output["id"], "text": text, "access_token": "at-public"} in fake_twitter.tweets


def test_wrong_secret_is_a_permanent_401(user, fake_twitter):
    rejected_before = len(fake_twitter.rejections)
    error = failure(user, unique(), consumer_secret="cs-wrong-secret-9")
    assert not error.transient
    assert str(error) == "Twitter rejected the integration's credentials: 401 Unauthorized: Unauthorized"
    assert fake_twitter.rejections[rejected_before:] == ["signature mismatch"]


def test_unknown_access_token_is_a_401(user, fake_twitter):
    error = failure(user, unique(), access_token="at-nobody")
    assert "401 Unauthorized" in str(error)
    assert fake_twitter.rejections[-1] == "unknown consumer key or access token"


def test_duplicate_tweet_is_a_permanent_403(user):
    text = unique()
    tweet(user, text)
    error = failure(user, text)
    assert not error.transient
    assert str(error) == (
        "Twitter refused the tweet: 403 Forbidden: "
        "You are not allowed to create a Tweet with duplicate content."
    )


def test_rate_limit_is_transient_and_says_when_it_resets(user, fake_twitter):
    text = unique()
    fake_twitter.script(text, 429)
    error = failure(user, text)
    assert error.transient
    assert str(error).startswith("Twitter rate limit reached (resets at 20")
    assert "429 Too Many Requests" in str(error)


def test_server_error_is_transient(user, fake_twitter):
    text = unique()
    fake_twitter.script(text, 503)
    error = failure(user, text)
    assert error.transient
    assert str(error) == "Twitter server error: 503 Service Unavailable: Service Unavailable"


def test_unreachable_api_is_transient(user, settings):
    from tests.smtp_server import free_port

    settings.JUNCTION_TWITTER_API_BASE = f"http://127.0.0.1:{free_port()}"
    error = failure(user, unique())
    assert error.transient
    assert "cannot connect to the Twitter API" in str(error)


def test_no_secret_in_any_error(user, fake_twitter):
    text = unique()
    fake_twitter.script(text, 429, 503)
    messages = [str(failure(user, text)), str(failure(user, text)), str(failure(user, unique(), consumer_secret="cs-wrong-secret-9"))]
    for message in messages:
        for secret in (TWITTER_CREDENTIALS["consumer_secret"], TWITTER_CREDENTIALS["access_token_secret"], "cs-wrong-secret-9"):
            assert secret not in message


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_a_server_error_is_retried_by_the_executor(celery_workers, api, user, fake_twitter):
    text = unique("Retried")
    fake_twitter.script(text, 503)
    integration = make_integration(user, "twitter")
    interaction = make_interaction(user, active=True, tasks={
        "tweet": {"type": "send_tweet", "integration": str(integration.id), "body": {"text": text}, "retries": 2},
    })
    response = api.post(f"/api/interactions/{interaction.id}/run/", {}, format="json", HTTP_PREFER="wait=30")
    session = response.json()
    assert session["status"] == "completed", session
    assert session["tasks"]["tweet"]["attempts"] == 2
    assert session["tasks"]["tweet"]["output"]["text"] == text
    assert session["result"] == {"tweet": session["tasks"]["tweet"]["output"]}
