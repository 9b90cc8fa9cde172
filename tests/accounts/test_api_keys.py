"""API keys: shown once, stored hashed, usable as `Authorization: Api-Key <key>`, revocable."""
from __future__ import annotations

import pytest
from django.db import connection
from rest_framework.test import APIClient

from accounts.models import ApiKey
from tests.accounts.test_auth import assert_error


def create_key(client: APIClient, name: str = "ci") -> dict:
    response = client.post("/api/auth/api-keys/", {"name": name}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def key_client(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    return client


@pytest.mark.django_db
class TestApiKeys:
    def test_create_returns_the_key_once(self, api):
        body = create_key(api, "deploy")
        assert {"id", "name", "prefix", "key"} <= set(body)
        assert body["name"] == "deploy"
        assert len(body["key"]) >= 32
        assert body["key"].startswith(body["prefix"])

    def test_key_is_stored_hashed(self, api):
        key = create_key(api)["key"]
        with connection.cursor() as cursor:
            cursor.execute("SELECT * FROM accounts_apikey")
            rows = cursor.fetchall()
        assert len(rows) == 1
        assert all(key not in str(value) for value in rows[0])
        stored = ApiKey.objects.get()
        assert stored.hashed_key != key and len(stored.hashed_key) == 64

    def test_listing_and_detail_never_show_the_key(self, api):
        created = create_key(api)
        listing = api.get("/api/auth/api-keys/")
        assert listing.status_code == 200
        assert listing.json()["count"] == 1
        assert created["key"] not in listing.content.decode()
        assert "key" not in listing.json()["results"][0]
        assert listing.json()["results"][0]["prefix"] == created["prefix"]
        detail = api.get(f"/api/auth/api-keys/{created['id']}/")
        assert detail.status_code == 200
        assert created["key"] not in detail.content.decode()

    def test_key_authenticates(self, api, user):
        key = create_key(api)["key"]
        response = key_client(key).get("/api/auth/me/")
        assert response.status_code == 200, response.content
        assert response.json()["id"] == str(user.id)

    def test_key_works_on_other_routes(self, api):
        key = create_key(api)["key"]
        assert key_client(key).get("/api/interactions/").status_code == 200

    def test_wrong_key_is_401(self, api):
        key = create_key(api)["key"]
        assert_error(key_client(key + "x").get("/api/auth/me/"), 401, "authentication_failed")

    def test_malformed_header_is_401(self, anon):
        anon.credentials(HTTP_AUTHORIZATION="Api-Key")
        assert_error(anon.get("/api/auth/me/"), 401, "authentication_failed")

    def test_revoked_key_is_401_and_leaves_the_listing(self, api):
        created = create_key(api)
        client = key_client(created["key"])
        assert client.get("/api/auth/me/").status_code == 200
        assert api.delete(f"/api/auth/api-keys/{created['id']}/").status_code == 204
        assert_error(client.get("/api/auth/me/"), 401, "authentication_failed")
        assert api.get("/api/auth/api-keys/").json()["count"] == 0
        assert ApiKey.objects.get(id=created["id"]).revoked_at is not None

    def test_revoking_twice_is_404(self, api):
        created = create_key(api)
        assert api.delete(f"/api/auth/api-keys/{created['id']}/").status_code == 204
        assert_error(api.delete(f"/api/auth/api-keys/{created['id']}/"), 404, "not_found")

    def test_key_of_a_deactivated_user_is_401(self, api, user):
        key = create_key(api)["key"]
        user.is_active = False
        user.save()
        assert_error(key_client(key).get("/api/auth/me/"), 401)

    def test_name_is_required(self, api):
        body = assert_error(api.post("/api/auth/api-keys/", {}, format="json"), 400, "validation_error")
        assert "name" in body["details"]

    def test_anonymous_cannot_create_keys(self, anon):
        assert_error(anon.post("/api/auth/api-keys/", {"name": "x"}, format="json"), 401)
        assert not ApiKey.objects.exists()

    def test_each_key_is_different(self, api):
        assert create_key(api, "a")["key"] != create_key(api, "b")["key"]
