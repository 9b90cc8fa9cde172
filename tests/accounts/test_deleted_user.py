"""A deleted user's tokens are refused with a 401, never a 500."""
from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from tests.accounts.test_auth import assert_error
from tests.conftest import PASSWORD, make_user

pytestmark = pytest.mark.django_db


def tokens(user) -> dict:
    response = APIClient().post("/api/auth/login/", {"username": user.username, "password": PASSWORD}, format="json")
    assert response.status_code == 200
    return response.json()


def test_a_deleted_users_refresh_token_is_401():
    user = make_user()
    issued = tokens(user)
    user.delete()
    response = APIClient().post("/api/auth/refresh/", {"refresh": issued["refresh"]}, format="json")
    assert_error(response, 401)


def test_a_deleted_users_access_token_is_401():
    user = make_user()
    issued = tokens(user)
    user.delete()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {issued['access']}")
    assert_error(client.get("/api/auth/me/"), 401)


def test_an_inactive_users_refresh_token_is_401():
    user = make_user()
    issued = tokens(user)
    user.is_active = False
    user.save()
    response = APIClient().post("/api/auth/refresh/", {"refresh": issued["refresh"]}, format="json")
    assert_error(response, 401, "no_active_account")
