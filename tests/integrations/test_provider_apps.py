"""Provider apps (SPEC §2.7): the builder's apps registered with OAuth providers, as objects."""
from __future__ import annotations

import io

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.test import Client

from accounts.models import User
from integrations import services
from integrations.encryption import decrypt_json
from integrations.models import ProviderApp
from tests.accounts.test_auth import assert_error
from tests.conftest import TWITTER_APP_CREDENTIALS

pytestmark = pytest.mark.django_db
SECRET = TWITTER_APP_CREDENTIALS["consumer_secret"]


def create(api, name="my twitter app", **overrides):
    body = {"name": name, "provider": "twitter", "credentials": dict(TWITTER_APP_CREDENTIALS), **overrides}
    return api.post("/api/provider-apps/", body, format="json")


def make_app(user: User, name: str = "app", callback_url: str = "") -> ProviderApp:
    return services.provider_app_create(user=user, name=name, provider="twitter",
                                        credentials=dict(TWITTER_APP_CREDENTIALS), callback_url=callback_url)


def test_providers_say_how_their_accounts_connect(api):
    described = {p["provider"]: p for p in api.get("/api/providers/").json()}
    assert described["twitter"]["connect"] == "oauth1"
    assert described["smtp"]["connect"] == "credentials"
    app_fields = {f["name"] for f in described["twitter"]["fields"] if f["app"]}
    assert app_fields == {"consumer_key", "consumer_secret"}
    assert not any(f["app"] for f in described["smtp"]["fields"])


def test_create_answers_201_with_the_secret_masked_and_where_to_call_back(api):
    response = create(api, callback_url="https://myapp.example.com/connected")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["provider"] == "twitter" and body["name"] == "my twitter app"
    assert body["credentials"] == {"consumer_key": "ck-app-public", "consumer_secret": "********"}
    assert body["callback_url"] == "https://myapp.example.com/connected"
    assert body["oauth_callback"] == "http://testserver/api/oauth/callback/"
    assert SECRET not in response.content.decode()


def test_the_secret_is_stored_encrypted_only(api):
    app = ProviderApp.objects.get(pk=create(api).json()["id"])
    assert SECRET not in str(app.config) and SECRET not in app.secrets_encrypted
    assert decrypt_json(app.secrets_encrypted) == {"consumer_secret": SECRET}


def test_list_and_read_never_show_the_secret(api):
    app_id = create(api).json()["id"]
    for response in (api.get("/api/provider-apps/"), api.get(f"/api/provider-apps/{app_id}/")):
        assert response.status_code == 200
        assert SECRET not in response.content.decode()
    assert api.get("/api/provider-apps/").json()["count"] == 1


def test_a_provider_with_typed_in_credentials_has_no_apps(api):
    response = api.post("/api/provider-apps/", {"name": "mail", "provider": "smtp", "credentials": {}}, format="json")
    body = assert_error(response, 400, "validation_error")
    assert "provider" in body["details"]


def test_unknown_provider_is_named(api):
    body = assert_error(create(api, provider="myspace"), 400, "validation_error")
    assert "provider" in body["details"]


def test_only_the_apps_fields_are_accepted(api):
    body = assert_error(create(api, credentials={"consumer_key": "ck", "access_token": "at"}), 400, "validation_error")
    assert set(body["details"]) == {"credentials.access_token", "credentials.consumer_secret"}
    assert not ProviderApp.objects.exists()


def test_callback_url_must_be_http(api):
    body = assert_error(create(api, callback_url="ftp://myapp.example.com/x"), 400, "validation_error")
    assert "callback_url" in body["details"]


def test_names_are_unique_per_builder(api, other_api):
    assert create(api).status_code == 201
    body = assert_error(create(api), 400, "validation_error")
    assert "name" in body["details"]
    assert create(other_api).status_code == 201


def test_another_builders_app_is_404_on_every_route(api, other_user):
    app = make_app(other_user)
    base = f"/api/provider-apps/{app.id}/"
    assert_error(api.get(base), 404)
    assert_error(api.patch(base, {"name": "mine now"}, format="json"), 404)
    assert_error(api.post(f"{base}connect/"), 404)
    assert_error(api.delete(base), 404)
    assert api.get("/api/provider-apps/").json()["count"] == 0
    assert ProviderApp.objects.get(pk=app.pk).name == "app"


def test_anonymous_is_401(anon):
    assert_error(anon.get("/api/provider-apps/"), 401)
    assert_error(create(anon), 401)


def test_rename_and_new_secret(api):
    app_id = create(api).json()["id"]
    response = api.patch(f"/api/provider-apps/{app_id}/",
                         {"name": "renamed", "credentials": {"consumer_secret": "cs-rotated-secret-5"}}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["name"] == "renamed"
    assert "cs-rotated-secret-5" not in response.content.decode()
    app = ProviderApp.objects.get(pk=app_id)
    assert services.provider_app_credentials(provider_app=app) == {
        "consumer_key": "ck-app-public", "consumer_secret": "cs-rotated-secret-5"}


def test_changing_the_callback_url_needs_the_secret_again(api):
    app_id = create(api, callback_url="https://myapp.example.com/connected").json()["id"]
    response = api.patch(f"/api/provider-apps/{app_id}/", {"callback_url": "https://evil.example.net/"}, format="json")
    body = assert_error(response, 400, "secrets_required")
    assert set(body["details"]) == {"credentials.consumer_secret"}
    assert ProviderApp.objects.get(pk=app_id).callback_url == "https://myapp.example.com/connected"

    response = api.patch(f"/api/provider-apps/{app_id}/", {"callback_url": "https://new.example.com/",
                                                           "credentials": {"consumer_secret": SECRET}}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["callback_url"] == "https://new.example.com/"


def test_the_same_callback_url_needs_no_secret(api):
    app_id = create(api, callback_url="https://myapp.example.com/connected").json()["id"]
    response = api.patch(f"/api/provider-apps/{app_id}/",
                         {"callback_url": "https://myapp.example.com/connected", "name": "n2"}, format="json")
    assert response.status_code == 200, response.content


def test_delete(api):
    app_id = create(api).json()["id"]
    assert api.delete(f"/api/provider-apps/{app_id}/").status_code == 204
    assert not ProviderApp.objects.filter(pk=app_id).exists()


def test_rotate_encryption_keys_covers_provider_apps(user, settings):
    app = make_app(user)
    new_key = Fernet.generate_key().decode()
    settings.JUNCTION_ENCRYPTION_KEYS = [new_key, *settings.JUNCTION_ENCRYPTION_KEYS]
    out = io.StringIO()
    call_command("rotate_encryption_keys", stdout=out)
    assert "1 provider app(s)" in out.getvalue()
    settings.JUNCTION_ENCRYPTION_KEYS = [new_key]
    app.refresh_from_db()
    assert services.provider_app_credentials(provider_app=app)["consumer_secret"] == SECRET


def test_admin_shows_the_app_with_its_secret_masked(user):
    app = make_app(user, callback_url="https://myapp.example.com/connected")
    admin = User.objects.create_superuser(username="root", email="root@example.com", password="x")
    client = Client()
    client.force_login(admin)
    listing = client.get("/admin/integrations/providerapp/")
    assert listing.status_code == 200 and "https://myapp.example.com/connected" in listing.content.decode()
    page = client.get(f"/admin/integrations/providerapp/{app.id}/change/")
    assert page.status_code == 200
    text = page.content.decode()
    assert "ck-app-public" in text and "********" in text
    assert SECRET not in text and app.secrets_encrypted not in text
