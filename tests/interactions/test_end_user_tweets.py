"""A session started by an end user tweets from that end user's account (issue 10 items 5 and 6).

Real Celery workers, tweepy against the local fake Twitter API, which checks every OAuth 1.0a
signature and records the access token each tweet was signed with.
"""
from __future__ import annotations

import uuid

import pytest
from rest_framework.test import APIClient

from integrations import services as integration_services
from integrations.models import Integration
from interactions import services as interaction_services
from tests.conftest import TWITTER_CREDENTIALS, end_user_client, make_app, make_end_user
from tests.integrations.test_connect import authorize
from tests.integrations.test_provider_apps import make_app as make_provider_app

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture
def tweeting(user):
    """Alice's app `birds` and an interaction its end users run: tweet the caller's text from
    the caller's own account (the definition names no integration)."""
    app = make_app(user, slug="birds")
    interaction = interaction_services.interaction_create(
        user=user, name="tweet-it", tasks={"tweet": {"type": "send_tweet", "body": {"text": None}}},
        app=app.id, access="end_users",
    )
    return app, interaction_services.interaction_set_active(interaction=interaction, active=True)


def connect_twitter(owner, end_user, fake_twitter, token: str):
    """The end user's own Twitter account (as the OAuth flow would create it), known to the fake."""
    secret = f"{token}-secret"
    fake_twitter.tokens[token] = secret
    return integration_services.integration_create(
        user=owner, end_user=end_user, name="twitter", provider="twitter",
        credentials={**TWITTER_CREDENTIALS, "access_token": token, "access_token_secret": secret},
    )


def run(client, interaction, text: str):
    return client.post(f"/api/interactions/{interaction.id}/run/", {"tweet": {"text": text}}, format="json",
                       HTTP_PREFER="wait=30")


def test_the_tweet_is_signed_with_the_calling_end_users_token(celery_workers, user, tweeting, fake_twitter):
    app, interaction = tweeting
    ann, ben = make_end_user(app), make_end_user(app)
    connect_twitter(user, ann, fake_twitter, "at-ann")
    connect_twitter(user, ben, fake_twitter, "at-ben")
    text_ann, text_ben = f"from ann {uuid.uuid4().hex[:6]}", f"from ben {uuid.uuid4().hex[:6]}"
    session_ann = run(end_user_client(ann), interaction, text_ann).json()
    session_ben = run(end_user_client(ben), interaction, text_ben).json()
    assert session_ann["status"] == "completed", session_ann
    assert session_ben["status"] == "completed", session_ben
    signed_by = {tweet["text"]: tweet["access_token"] for tweet in fake_twitter.tweets}
    assert signed_by[text_ann] == "at-ann" and signed_by[text_ben] == "at-ben"
    assert session_ann["end_user"] == str(ann.id)


def test_an_end_user_without_an_account_is_told_to_connect_one(celery_workers, tweeting):
    app, interaction = tweeting
    session = run(end_user_client(make_end_user(app)), interaction, "no account").json()
    assert session["status"] == "failed"
    assert session["tasks"]["tweet"]["error"].startswith("connect a twitter account")


def test_a_builder_call_has_no_end_users_account(celery_workers, api, user, tweeting, fake_twitter):
    app, interaction = tweeting
    connect_twitter(user, make_end_user(app), fake_twitter, "at-someone")
    before = len(fake_twitter.tweets)
    session = run(api, interaction, "builder call").json()
    assert session["status"] == "failed"
    assert "not made by an end user" in session["tasks"]["tweet"]["error"]
    assert "connect a twitter account" in session["tasks"]["tweet"]["error"]
    assert len(fake_twitter.tweets) == before  # nobody's account was used


def test_an_account_connected_by_oauth_signs_the_end_users_tweets(celery_workers, user, tweeting, fake_twitter):
    """The whole path: the end user connects through the builder's provider app (the OAuth dance
    against the fake), then their session tweets with the access token that dance issued; two
    end users connecting the same Twitter account each tweet with their own token; after a
    disconnect the task is told to connect an account."""
    app, interaction = tweeting
    provider_app = make_provider_app(user)
    ann, ben = make_end_user(app), make_end_user(app)
    issued = {}
    for end_user in (ann, ben):
        client = end_user_client(end_user)
        started = client.post(f"/api/apps/{app.slug}/connect/{provider_app.id}/")
        assert started.status_code == 200, started.content
        connected = APIClient().get(authorize(started.json()["authorize_url"], "shared_tw"))
        assert connected.status_code == 200, connected.content
        issued[end_user.id] = fake_twitter.connected[-1]["access_token"]
        assert connected.json()["credentials"]["access_token"] == issued[end_user.id]
    assert issued[ann.id] != issued[ben.id]

    text_ann, text_ben = f"ann via oauth {uuid.uuid4().hex[:6]}", f"ben via oauth {uuid.uuid4().hex[:6]}"
    session_ann = run(end_user_client(ann), interaction, text_ann).json()
    session_ben = run(end_user_client(ben), interaction, text_ben).json()
    assert session_ann["status"] == "completed", session_ann
    assert session_ben["status"] == "completed", session_ben
    signed_by = {tweet["text"]: tweet["access_token"] for tweet in fake_twitter.tweets}
    assert signed_by[text_ann] == issued[ann.id] and signed_by[text_ben] == issued[ben.id]

    integration = Integration.objects.get(end_user=ann)
    assert end_user_client(ann).delete(f"/api/apps/{app.slug}/integrations/{integration.id}/").status_code == 204
    before = len(fake_twitter.tweets)
    session = run(end_user_client(ann), interaction, "after disconnect").json()
    assert session["status"] == "failed"
    assert session["tasks"]["tweet"]["error"].startswith("connect a twitter account")
    assert len(fake_twitter.tweets) == before
