"""Registration, JWT login/refresh, `me`, and every way authentication fails (SPEC 2.1)."""
from __future__ import annotations

from datetime import timedelta

import pytest
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

from accounts.models import User
from tests.conftest import PASSWORD


def assert_error(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"code", "message", "details"}, body
    assert isinstance(body["message"], str) and body["message"]
    assert isinstance(body["details"], dict)
    if code is not None:
        assert body["code"] == code, body
    return body


@pytest.mark.django_db
class TestRegister:
    def test_register_creates_a_user_and_returns_it(self, anon):
        response = anon.post(
            "/api/auth/register/",
            {"username": "carol", "email": "carol@example.com", "password": PASSWORD},
            format="json",
        )
        assert response.status_code == 201, response.content
        body = response.json()
        assert body["username"] == "carol"
        assert body["email"] == "carol@example.com"
        assert "password" not in body
        user = User.objects.get(id=body["id"])
        assert user.check_password(PASSWORD)
        assert user.password != PASSWORD

    def test_registered_user_can_log_in(self, anon):
        anon.post("/api/auth/register/",
                  {"username": "dave", "email": "dave@example.com", "password": PASSWORD}, format="json")
        response = anon.post("/api/auth/login/", {"username": "dave", "password": PASSWORD}, format="json")
        assert response.status_code == 200
        assert set(response.json()) == {"access", "refresh"}

    def test_taken_username_is_400_naming_username(self, anon, user):
        response = anon.post(
            "/api/auth/register/",
            {"username": user.username.upper(), "email": "x@example.com", "password": PASSWORD},
            format="json",
        )
        body = assert_error(response, 400, "validation_error")
        assert "username" in body["details"]

    def test_weak_password_is_400_naming_password(self, anon):
        response = anon.post(
            "/api/auth/register/", {"username": "erin", "email": "erin@example.com", "password": "123"},
            format="json",
        )
        body = assert_error(response, 400, "validation_error")
        assert "password" in body["details"]
        assert not User.objects.filter(username="erin").exists()

    def test_missing_fields_are_named(self, anon):
        body = assert_error(anon.post("/api/auth/register/", {}, format="json"), 400, "validation_error")
        assert {"username", "email", "password"} <= set(body["details"])

    def test_registration_can_be_turned_off(self, anon, settings):
        settings.JUNCTION_ALLOW_REGISTRATION = False
        response = anon.post(
            "/api/auth/register/",
            {"username": "frank", "email": "frank@example.com", "password": PASSWORD},
            format="json",
        )
        assert_error(response, 403, "registration_closed")
        assert not User.objects.filter(username="frank").exists()


@pytest.mark.django_db
class TestLoginAndTokens:
    def test_login_returns_access_and_refresh(self, anon, user):
        response = anon.post("/api/auth/login/", {"username": user.username, "password": PASSWORD}, format="json")
        assert response.status_code == 200
        access = AccessToken(response.json()["access"])
        assert str(access["user_id"]) == str(user.id)

    def test_wrong_password_is_401_with_error_shape(self, anon, user):
        response = anon.post("/api/auth/login/", {"username": user.username, "password": "wrong"}, format="json")
        body = assert_error(response, 401, "no_active_account")
        assert "wrong" not in body["message"]  # the submitted password is never echoed

    def test_unknown_user_is_401(self, anon):
        assert_error(anon.post("/api/auth/login/", {"username": "nobody", "password": "x"}, format="json"), 401)

    def test_login_missing_fields_is_400(self, anon):
        body = assert_error(anon.post("/api/auth/login/", {}, format="json"), 400, "validation_error")
        assert {"username", "password"} <= set(body["details"])

    def test_refresh_returns_a_new_access_token(self, anon, user):
        tokens = anon.post("/api/auth/login/", {"username": user.username, "password": PASSWORD},
                           format="json").json()
        response = anon.post("/api/auth/refresh/", {"refresh": tokens["refresh"]}, format="json")
        assert response.status_code == 200, response.content
        access = response.json()["access"]
        anon.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
        assert anon.get("/api/auth/me/").json()["username"] == user.username

    def test_refresh_with_an_access_token_is_401(self, anon, user):
        access = str(AccessToken.for_user(user))
        assert_error(anon.post("/api/auth/refresh/", {"refresh": access}, format="json"), 401, "token_not_valid")

    def test_refresh_with_garbage_is_401(self, anon):
        assert_error(anon.post("/api/auth/refresh/", {"refresh": "not-a-token"}, format="json"),
                     401, "token_not_valid")

    def test_expired_refresh_is_401(self, anon, user):
        refresh = RefreshToken.for_user(user)
        refresh.set_exp(lifetime=-timedelta(seconds=1))
        assert_error(anon.post("/api/auth/refresh/", {"refresh": str(refresh)}, format="json"),
                     401, "token_not_valid")


@pytest.mark.django_db
class TestMe:
    def test_me_returns_the_current_user(self, api, user):
        response = api.get("/api/auth/me/")
        assert response.status_code == 200
        body = response.json()
        assert body["id"] == str(user.id)
        assert body["username"] == user.username
        assert body["email"] == user.email
        assert "password" not in body

    def test_anonymous_is_401_with_error_shape(self, anon):
        body = assert_error(anon.get("/api/auth/me/"), 401, "not_authenticated")
        assert body["details"] == {}

    def test_expired_access_token_is_401(self, user):
        token = AccessToken.for_user(user)
        token.set_exp(lifetime=-timedelta(minutes=1))
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
        assert_error(client.get("/api/auth/me/"), 401, "token_not_valid")

    def test_tampered_access_token_is_401(self, user, other_user):
        token = str(AccessToken.for_user(user))
        header, payload, signature = token.split(".")
        # Swap in the payload of a token for someone else, keeping the first signature.
        forged_payload = str(AccessToken.for_user(other_user)).split(".")[1]
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {header}.{forged_payload}.{signature}")
        assert_error(client.get("/api/auth/me/"), 401, "token_not_valid")

    def test_token_with_flipped_signature_is_401(self, user):
        token = str(AccessToken.for_user(user))
        flipped = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {flipped}")
        assert_error(client.get("/api/auth/me/"), 401, "token_not_valid")

    def test_refresh_token_is_not_an_access_token(self, user):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {RefreshToken.for_user(user)}")
        assert_error(client.get("/api/auth/me/"), 401, "token_not_valid")

    def test_token_of_a_deactivated_user_is_401(self, user):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {AccessToken.for_user(user)}")
        user.is_active = False
        user.save()
        assert_error(client.get("/api/auth/me/"), 401)

    def test_unknown_authorization_scheme_is_401(self, anon):
        anon.credentials(HTTP_AUTHORIZATION="Basic dXNlcjpwYXNz")
        assert_error(anon.get("/api/auth/me/"), 401)
