"""The API with the admin's session (the canvas, the browsable API): CSRF on unsafe methods,
and clients with a token or an API key decided by their header alone (docs/security.md)."""
from __future__ import annotations

import pytest
from django.test import Client

from accounts.models import User
from accounts.services import api_key_create
from interactions.models import Interaction
from tests.conftest import SIMPLE_TASKS

pytestmark = pytest.mark.django_db


@pytest.fixture
def browser(user) -> Client:
    """A browser logged in to the admin, with Django's CSRF check on as in production."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    assert client.get("/admin/login/").status_code in (200, 302)  # sets the csrftoken cookie
    return client


def token(client: Client) -> str:
    return client.cookies["csrftoken"].value


def test_a_logged_in_browser_reads_the_api(browser, user):
    response = browser.get("/api/auth/me/")
    assert response.status_code == 200
    assert response.json()["username"] == user.username


def test_an_unsafe_request_without_the_csrf_token_is_refused_in_the_error_shape(browser, user):
    response = browser.post("/api/interactions/", {"name": "x", "tasks": SIMPLE_TASKS}, content_type="application/json")
    assert response.status_code == 403
    assert set(response.json()) == {"code", "message", "details"}
    assert "CSRF" in response.json()["message"]
    assert not Interaction.objects.filter(user=user).exists()


def test_an_unsafe_request_with_the_csrf_token_goes_through(browser, user):
    response = browser.post("/api/interactions/", {"name": "x", "tasks": SIMPLE_TASKS},
                            content_type="application/json", HTTP_X_CSRFTOKEN=token(browser))
    assert response.status_code == 201, response.json()
    assert Interaction.objects.get(user=user).name == "x"


def test_an_api_key_decides_who_is_calling_even_with_a_session_cookie(browser, user, other_user):
    key = api_key_create(user=other_user, name="ci").key
    response = browser.post("/api/interactions/", {"name": "by-key", "tasks": SIMPLE_TASKS},
                            content_type="application/json", HTTP_AUTHORIZATION=f"Api-Key {key}")
    assert response.status_code == 201  # no CSRF token needed: the key is not ambient
    assert Interaction.objects.get(name="by-key").user == other_user


def test_a_bad_key_is_401_and_never_falls_back_to_the_session(browser):
    response = browser.get("/api/interactions/", HTTP_AUTHORIZATION="Api-Key not-a-key")
    assert response.status_code == 401
    assert response.json()["code"] == "authentication_failed"


def test_anonymous_callers_still_get_401_with_a_challenge(db):
    response = Client().get("/api/interactions/")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_deactivated_users_session_no_longer_reaches_the_api(browser, user):
    User.objects.filter(pk=user.pk).update(is_active=False)
    assert browser.get("/api/interactions/").status_code == 401


def test_the_browsable_api_renders_for_a_logged_in_browser(browser, user):
    response = browser.get("/api/interactions/", HTTP_ACCEPT="text/html")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    # The page hands its forms the CSRF token they send back (DRF's `window.drf.csrfToken`).
    assert b"csrfToken" in response.content
    assert user.username.encode() in response.content  # shown as logged in
