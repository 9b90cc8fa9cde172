"""Providers and integrations (SPEC 2.3): validation, encryption at rest, no secret in a response."""
from __future__ import annotations

import json

import pytest
from cryptography.fernet import Fernet
from django.db import connection

from integrations import encryption, services
from integrations.models import Integration
from tests.accounts.test_auth import assert_error
from tests.conftest import SMTP_CREDENTIALS, TWITTER_CREDENTIALS, make_integration

SECRETS = [TWITTER_CREDENTIALS["consumer_secret"], TWITTER_CREDENTIALS["access_token_secret"],
           SMTP_CREDENTIALS["password"]]


def create(api, provider="twitter", name="main", **overrides):
    base = TWITTER_CREDENTIALS if provider == "twitter" else SMTP_CREDENTIALS
    return api.post("/api/integrations/", {"name": name, "provider": provider,
                                           "credentials": {**base, **overrides}}, format="json")


def assert_no_secret(response) -> None:
    text = response.content.decode()
    for secret in SECRETS:
        assert secret not in text


@pytest.mark.django_db
class TestProviders:
    def test_list_providers(self, api):
        response = api.get("/api/providers/")
        assert response.status_code == 200
        providers = {p["provider"]: p for p in response.json()}
        assert set(providers) >= {"twitter", "smtp"}
        twitter = {f["name"]: f for f in providers["twitter"]["fields"]}
        assert set(twitter) == {"consumer_key", "consumer_secret", "access_token", "access_token_secret"}
        assert twitter["consumer_secret"]["secret"] and twitter["access_token_secret"]["secret"]
        assert not twitter["consumer_key"]["secret"]
        smtp = {f["name"]: f for f in providers["smtp"]["fields"]}
        assert set(smtp) == {"host", "port", "username", "password", "use_tls", "from_email"}
        assert smtp["password"]["secret"] and not smtp["host"]["secret"]
        assert all({"name", "secret", "required"} <= set(f) for f in smtp.values())

    def test_providers_need_authentication(self, anon):
        assert_error(anon.get("/api/providers/"), 401)


@pytest.mark.django_db
class TestCreate:
    def test_create_returns_201_without_secrets(self, api):
        response = create(api)
        assert response.status_code == 201, response.content
        body = response.json()
        assert body["name"] == "main" and body["provider"] == "twitter"
        assert body["credentials"]["consumer_key"] == "ck-public"
        assert body["credentials"]["consumer_secret"] != TWITTER_CREDENTIALS["consumer_secret"]
        assert_no_secret(response)

    def test_smtp_integration(self, api):
        response = create(api, provider="smtp")
        assert response.status_code == 201, response.content
        assert response.json()["credentials"]["host"] == "127.0.0.1"
        assert_no_secret(response)

    def test_missing_required_credential_is_named(self, api):
        credentials = dict(TWITTER_CREDENTIALS)
        del credentials["access_token"]
        response = api.post("/api/integrations/", {"name": "x", "provider": "twitter",
                                                   "credentials": credentials}, format="json")
        body = assert_error(response, 400, "validation_error")
        assert "credentials.access_token" in body["details"]
        assert not Integration.objects.exists()

    def test_unknown_credential_is_named(self, api):
        body = assert_error(create(api, extra="1"), 400, "validation_error")
        assert "credentials.extra" in body["details"]

    def test_wrong_credential_type_is_named_without_echoing_the_value(self, api):
        body = assert_error(create(api, provider="smtp", port="twenty-five", use_tls="yes"), 400)
        assert {"credentials.port", "credentials.use_tls"} <= set(body["details"])
        assert "twenty-five" not in json.dumps(body)

    def test_blank_required_credential(self, api):
        body = assert_error(create(api, consumer_key=""), 400)
        assert "credentials.consumer_key" in body["details"]

    def test_wrong_secret_type_does_not_echo_secret(self, api):
        response = create(api, consumer_secret=["cs-very-secret-1"])
        body = assert_error(response, 400)
        assert "credentials.consumer_secret" in body["details"]
        assert_no_secret(response)

    def test_unknown_provider(self, api):
        body = assert_error(create(api, provider="myspace"), 400, "validation_error")
        assert "provider" in body["details"]
        assert "myspace" in body["details"]["provider"][0]

    def test_names_are_unique_per_user(self, api, other_api):
        assert create(api, name="same").status_code == 201
        body = assert_error(create(api, name="same"), 400, "validation_error")
        assert "name" in body["details"]
        assert create(other_api, name="same").status_code == 201


@pytest.mark.django_db
class TestEncryptionAtRest:
    def test_raw_row_holds_no_secret_in_clear(self, api):
        created = create(api).json()
        smtp = create(api, provider="smtp", name="mail").json()
        with connection.cursor() as cursor:
            cursor.execute("SELECT * FROM integrations_integration WHERE id IN (%s, %s)",
                           [created["id"], smtp["id"]])
            rows = cursor.fetchall()
        assert len(rows) == 2
        raw = " ".join(str(value) for row in rows for value in row)
        for secret in SECRETS:
            assert secret not in raw
        assert "ck-public" in raw  # non-secret values are kept readable

    def test_secrets_decrypt_for_the_client_builder(self, user):
        integration = make_integration(user)
        credentials = services.integration_credentials(integration=integration)
        assert credentials == TWITTER_CREDENTIALS

    def test_smtp_defaults_are_filled_in(self, user):
        integration = services.integration_create(
            user=user, name="bare", provider="smtp", credentials={"host": "h", "from_email": "a@b.c"})
        credentials = services.integration_credentials(integration=integration)
        assert credentials["port"] == 587 and credentials["use_tls"] is True


@pytest.mark.django_db
class TestResponsesNeverContainSecrets:
    def test_list_detail_patch(self, api):
        created = create(api).json()
        smtp = create(api, provider="smtp", name="mail").json()
        for response in (
            api.get("/api/integrations/"),
            api.get(f"/api/integrations/{created['id']}/"),
            api.get(f"/api/integrations/{smtp['id']}/"),
            api.patch(f"/api/integrations/{created['id']}/",
                      {"credentials": {"consumer_secret": "cs-very-secret-1"}}, format="json"),
            api.patch(f"/api/integrations/{smtp['id']}/", {"name": "mail2"}, format="json"),
        ):
            assert response.status_code == 200, response.content
            assert_no_secret(response)

    def test_listing_is_paginated(self, api):
        create(api, name="a")
        create(api, name="b")
        body = api.get("/api/integrations/").json()
        assert body["count"] == 2 and {i["name"] for i in body["results"]} == {"a", "b"}

    def test_filter_by_provider(self, api):
        create(api, name="a")
        create(api, provider="smtp", name="b")
        body = api.get("/api/integrations/?provider=smtp").json()
        assert [i["name"] for i in body["results"]] == ["b"]


@pytest.mark.django_db
class TestUpdate:
    def test_patch_merges_credentials(self, api, user):
        created = create(api).json()
        response = api.patch(f"/api/integrations/{created['id']}/",
                             {"credentials": {"access_token_secret": "new-secret-value", "access_token": "at-2"}},
                             format="json")
        assert response.status_code == 200, response.content
        assert "new-secret-value" not in response.content.decode()
        assert response.json()["credentials"]["access_token"] == "at-2"
        stored = services.integration_credentials(integration=Integration.objects.get(id=created["id"]))
        assert stored == {**TWITTER_CREDENTIALS, "access_token_secret": "new-secret-value", "access_token": "at-2"}

    def test_patch_rename(self, api):
        created = create(api).json()
        response = api.patch(f"/api/integrations/{created['id']}/", {"name": "renamed"}, format="json")
        assert response.status_code == 200
        assert response.json()["name"] == "renamed"
        assert Integration.objects.get(id=created["id"]).name == "renamed"

    def test_patch_rename_to_taken_name_is_400(self, api):
        create(api, name="one")
        two = create(api, name="two").json()
        body = assert_error(api.patch(f"/api/integrations/{two['id']}/", {"name": "one"}, format="json"), 400)
        assert "name" in body["details"]
        assert Integration.objects.get(id=two["id"]).name == "two"

    def test_patch_validates_credentials(self, api):
        created = create(api).json()
        body = assert_error(api.patch(f"/api/integrations/{created['id']}/",
                                      {"credentials": {"nonsense": "x"}}, format="json"), 400)
        assert "credentials.nonsense" in body["details"]

    def test_put_is_not_offered(self, api):
        created = create(api).json()
        assert_error(api.put(f"/api/integrations/{created['id']}/", {}, format="json"), 405)

    def test_delete(self, api):
        created = create(api).json()
        assert api.delete(f"/api/integrations/{created['id']}/").status_code == 204
        assert not Integration.objects.filter(id=created["id"]).exists()
        assert_error(api.get(f"/api/integrations/{created['id']}/"), 404)


@pytest.mark.django_db
class TestKeyRotation:
    def test_old_key_still_decrypts_and_rotate_moves_to_the_first_key(self, user, settings):
        key_a, key_b = Fernet.generate_key().decode(), Fernet.generate_key().decode()
        settings.JUNCTION_ENCRYPTION_KEYS = [key_b]
        integration = make_integration(user)
        old_token = integration.secrets_encrypted
        Fernet(key_b.encode()).decrypt(old_token.encode())  # encrypted under B

        settings.JUNCTION_ENCRYPTION_KEYS = [key_a, key_b]
        integration.refresh_from_db()
        assert services.integration_credentials(integration=integration) == TWITTER_CREDENTIALS

        rotated = encryption.rotate(old_token)
        assert rotated != old_token
        assert json.loads(Fernet(key_a.encode()).decrypt(rotated.encode())) == {
            "consumer_secret": TWITTER_CREDENTIALS["consumer_secret"],
            "access_token_secret": TWITTER_CREDENTIALS["access_token_secret"],
        }
        settings.JUNCTION_ENCRYPTION_KEYS = [key_a]  # B dropped: the rotated token still reads
        assert encryption.decrypt_json(rotated)["consumer_secret"] == TWITTER_CREDENTIALS["consumer_secret"]

    def test_unknown_key_raises_decryption_error(self, user, settings):
        integration = make_integration(user)
        settings.JUNCTION_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
        with pytest.raises(encryption.DecryptionError):
            services.integration_credentials(integration=integration)

    def test_new_secrets_are_encrypted_under_the_first_key(self, user, settings):
        key_a, key_b = Fernet.generate_key().decode(), Fernet.generate_key().decode()
        settings.JUNCTION_ENCRYPTION_KEYS = [key_a, key_b]
        integration = make_integration(user)
        Fernet(key_a.encode()).decrypt(integration.secrets_encrypted.encode())


def test_patch_after_key_loss_needs_every_secret_again(api, user, settings):
    integration = make_integration(user, "twitter")
    settings.JUNCTION_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]  # the old key is gone

    partial = api.patch(f"/api/integrations/{integration.id}/",
                        {"credentials": {"consumer_secret": "new-cs"}}, format="json")
    assert_error(partial, 409, "secrets_unreadable")
    assert set(partial.json()["details"]) == {"credentials.access_token_secret"}

    full = api.patch(f"/api/integrations/{integration.id}/",
                     {"credentials": {"consumer_secret": "new-cs", "access_token_secret": "new-ats"}},
                     format="json")
    assert full.status_code == 200
    integration.refresh_from_db()
    assert services.integration_credentials(integration=integration)["access_token_secret"] == "new-ats"
