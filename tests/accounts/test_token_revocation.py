"""JWT revocation: rotation with a blacklist, logout, password change, deactivation (docs/security.md)."""
from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from accounts import services as account_services
from accounts.models import User
from tests.accounts.test_auth import assert_error
from tests.conftest import PASSWORD

NEW_PASSWORD = "another-horse-battery-staple-2"


def login(user, password: str = PASSWORD) -> dict:
    response = APIClient().post("/api/auth/login/", {"username": user.username, "password": password},
                                format="json")
    assert response.status_code == 200, response.content
    return response.json()


def bearer(access: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    return client


def refresh(token: str):
    return APIClient().post("/api/auth/refresh/", {"refresh": token}, format="json")


@pytest.mark.django_db
class TestRotation:
    def test_a_refresh_rotates_and_the_old_refresh_token_is_dead(self, user):
        pair = login(user)
        first = refresh(pair["refresh"])
        assert first.status_code == 200
        assert set(first.json()) == {"access", "refresh"} and first.json()["refresh"] != pair["refresh"]
        assert_error(refresh(pair["refresh"]), 401)  # used once: blacklisted
        assert refresh(first.json()["refresh"]).status_code == 200
        assert bearer(first.json()["access"]).get("/api/auth/me/").status_code == 200


@pytest.mark.django_db
class TestLogout:
    def test_logout_blacklists_the_refresh_token(self, user):
        pair = login(user)
        response = APIClient().post("/api/auth/logout/", {"refresh": pair["refresh"]}, format="json")
        assert response.status_code == 204
        assert_error(refresh(pair["refresh"]), 401)

    def test_logout_everywhere_revokes_every_token(self, user):
        here, there = login(user), login(user)
        response = APIClient().post("/api/auth/logout/", {"refresh": here["refresh"], "everywhere": True},
                                    format="json")
        assert response.status_code == 204
        for pair in (here, there):
            assert_error(bearer(pair["access"]).get("/api/auth/me/"), 401)
            assert_error(refresh(pair["refresh"]), 401)
        assert bearer(login(user)["access"]).get("/api/auth/me/").status_code == 200

    def test_a_bad_token_is_400_naming_it(self):
        body = assert_error(APIClient().post("/api/auth/logout/", {"refresh": "not.a.token"}, format="json"),
                            400, "validation_error")
        assert "refresh" in body["details"]

    def test_an_access_token_is_not_a_refresh_token(self, user):
        pair = login(user)
        response = APIClient().post("/api/auth/logout/", {"refresh": pair["access"]}, format="json")
        assert_error(response, 400)


@pytest.mark.django_db
class TestPasswordChange:
    def test_it_revokes_every_earlier_token_and_answers_a_new_pair(self, user):
        old_pair = login(user)
        client = bearer(old_pair["access"])
        response = client.post("/api/auth/password/", {"old": PASSWORD, "new": NEW_PASSWORD}, format="json")
        assert response.status_code == 200, response.content
        fresh = response.json()
        assert set(fresh) == {"access", "refresh"}
        assert_error(bearer(old_pair["access"]).get("/api/auth/me/"), 401)
        assert_error(refresh(old_pair["refresh"]), 401)
        assert bearer(fresh["access"]).get("/api/auth/me/").status_code == 200
        assert refresh(fresh["refresh"]).status_code == 200
        login(user, NEW_PASSWORD)
        assert APIClient().post("/api/auth/login/", {"username": user.username, "password": PASSWORD},
                                format="json").status_code == 401

    def test_a_wrong_old_password_is_400_and_changes_nothing(self, api, user):
        body = assert_error(api.post("/api/auth/password/", {"old": "wrong", "new": NEW_PASSWORD}, format="json"),
                            400, "validation_error")
        assert "old" in body["details"]
        assert api.get("/api/auth/me/").status_code == 200
        assert User.objects.get(pk=user.pk).check_password(PASSWORD)

    def test_a_weak_new_password_is_400_naming_it(self, api):
        body = assert_error(api.post("/api/auth/password/", {"old": PASSWORD, "new": "123"}, format="json"),
                            400, "validation_error")
        assert "new" in body["details"]

    def test_anonymous_is_401(self, anon):
        assert_error(anon.post("/api/auth/password/", {"old": PASSWORD, "new": NEW_PASSWORD}, format="json"), 401)


@pytest.mark.django_db
class TestDeactivation:
    def test_it_revokes_tokens_for_good(self, user):
        pair = login(user)
        key = account_services.api_key_create(user=user, name="k").key
        account_services.user_set_active(user=user, active=False)
        assert_error(bearer(pair["access"]).get("/api/auth/me/"), 401)
        assert_error(refresh(pair["refresh"]), 401)
        key_client = APIClient()
        key_client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
        assert_error(key_client.get("/api/auth/me/"), 401)
        # Reactivated, the old tokens stay dead; the key (a separate credential) works again.
        account_services.user_set_active(user=user, active=True)
        assert_error(bearer(pair["access"]).get("/api/auth/me/"), 401)
        assert_error(refresh(pair["refresh"]), 401)
        assert key_client.get("/api/auth/me/").status_code == 200

    def test_the_admin_deactivating_a_user_revokes_their_tokens(self, user, admin_client):
        pair = login(user)
        response = admin_client.post("/admin/accounts/user/", {"action": "deactivate", "_selected_action": [user.pk]})
        assert response.status_code == 302
        assert not User.objects.get(pk=user.pk).is_active
        User.objects.filter(pk=user.pk).update(is_active=True)
        assert_error(bearer(pair["access"]).get("/api/auth/me/"), 401)
