"""The accounts admin: API keys created (shown once, stored hashed) and revoked; builders' access."""
from __future__ import annotations

import re
from datetime import timedelta

from django.core.management import call_command
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import ApiKey, User
from accounts.services import api_key_create, hash_api_key
from tests.admin_helpers import query_count
from tests.conftest import PASSWORD, make_interaction, make_user

KEYS = "/admin/accounts/apikey/"


def shown_key(html: str) -> str:
    match = re.search(r'value="(jk_[^"]+)" data-testid="admin-apikey-key"', html)
    assert match, "the created key is shown"
    return match.group(1)


def authenticates(key: str) -> bool:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    return client.get("/api/interactions/").status_code == 200


def test_a_key_created_in_the_admin_is_shown_once_and_stored_hashed(superuser_client, user):
    response = superuser_client.post(f"{KEYS}add/", {"user": str(user.pk), "name": "ci", "scope": "full"})
    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    key = shown_key(response.content.decode())
    api_key = ApiKey.objects.get(user=user, name="ci")
    assert api_key.hashed_key == hash_api_key(key) and key not in api_key.hashed_key
    assert authenticates(key)
    # Never again: not on its page, not in the list.
    assert key not in superuser_client.get(f"{KEYS}{api_key.pk}/change/").content.decode()
    assert key not in superuser_client.get(KEYS).content.decode()


def test_a_run_key_limited_to_chosen_interactions(superuser_client, user):
    chosen = make_interaction(user)
    make_interaction(user)
    response = superuser_client.post(f"{KEYS}add/", {
        "user": str(user.pk), "name": "runner", "scope": "run", "interactions": [str(chosen.pk)],
        "expires_at_0": (timezone.now() + timedelta(days=30)).strftime("%Y-%m-%d"), "expires_at_1": "12:00:00",
    })
    assert response.status_code == 200
    api_key = ApiKey.objects.get(name="runner")
    assert api_key.scope == "run" and api_key.limited
    assert list(api_key.interactions.all()) == [chosen]
    assert api_key.expires_at is not None


def test_the_services_checks_name_the_field(superuser_client, user, other_user):
    mine = make_interaction(user)
    theirs = make_interaction(other_user)
    cases = [
        ({"scope": "full", "interactions": [str(mine.pk)]}, "interactions"),
        ({"scope": "run", "interactions": [str(theirs.pk)]}, "interactions"),  # not the owner's
        ({"scope": "full", "expires_at_0": "2020-01-01", "expires_at_1": "00:00:00"}, "expires_at"),
    ]
    for fields, field in cases:
        response = superuser_client.post(f"{KEYS}add/", {"user": str(user.pk), "name": "bad", **fields})
        assert response.status_code == 200
        assert field in response.context["adminform"].form.errors, fields
    assert not ApiKey.objects.filter(name="bad").exists()


def test_revoke_button_keeps_the_row_and_stops_the_key(superuser_client, user):
    created = api_key_create(user=user, name="ci")
    page = superuser_client.get(f"{KEYS}{created.api_key.pk}/change/").content.decode()
    assert 'data-testid="admin-apikey-revoke"' in page
    assert superuser_client.get(f"{KEYS}{created.api_key.pk}/revoke/").status_code == 405
    assert superuser_client.post(f"{KEYS}{created.api_key.pk}/revoke/").status_code == 302
    created.api_key.refresh_from_db()
    assert created.api_key.revoked_at is not None
    assert not authenticates(created.key)
    assert 'data-testid="admin-apikey-revoke"' not in superuser_client.get(
        f"{KEYS}{created.api_key.pk}/change/").content.decode()


def test_a_builder_creates_and_revokes_only_their_own_keys(builder_client, builder, other_user):
    theirs = api_key_create(user=other_user, name="theirs")
    mine = make_interaction(builder)
    other_interaction = make_interaction(other_user, name="not-mine")
    page = builder_client.get(f"{KEYS}add/").content.decode()
    assert 'name="user"' not in page
    assert str(mine.pk) in page and str(other_interaction.pk) not in page

    response = builder_client.post(f"{KEYS}add/", {"name": "mine", "scope": "full"})
    assert response.status_code == 200
    assert ApiKey.objects.get(name="mine").user == builder
    assert authenticates(shown_key(response.content.decode()))

    listing = builder_client.get(KEYS).content.decode()
    assert ">mine<" in listing and ">theirs<" not in listing
    assert builder_client.post(f"{KEYS}{theirs.api_key.pk}/revoke/").status_code == 404
    response = builder_client.post(KEYS, {"action": "revoke", "_selected_action": [str(theirs.api_key.pk)]})
    theirs.api_key.refresh_from_db()
    assert theirs.api_key.revoked_at is None
    assert authenticates(theirs.key)


def test_a_builder_cannot_raise_their_own_privileges(builder):
    from django.contrib.auth.models import Permission

    builder.user_permissions.add(Permission.objects.get(codename="change_user"), Permission.objects.get(
        codename="view_user"))
    client = Client()
    client.force_login(User.objects.get(pk=builder.pk))
    other = make_user("someone")
    assert client.get(f"/admin/accounts/user/{other.pk}/change/").status_code == 302  # not found
    page = client.get(f"/admin/accounts/user/{builder.pk}/change/")
    assert page.status_code == 200
    assert "is_superuser" not in page.context["adminform"].form.fields


def test_grant_admin_lets_a_builder_log_in_to_the_admin(db):
    user = make_user("newcomer")
    client = Client()
    assert client.post("/admin/login/", {"username": "newcomer", "password": PASSWORD}).status_code == 200  # refused
    call_command("grant_admin", "newcomer")
    response = client.post("/admin/login/?next=/admin/", {"username": "newcomer", "password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == "/admin/"
    index = client.get("/admin/").content.decode()
    for page in ("interactions/interaction", "interactions/session", "integrations/integration", "accounts/apikey"):
        assert f'href="/admin/{page}/"' in index
    assert "/admin/accounts/user/" not in index
    user.refresh_from_db()
    assert user.is_staff and not user.is_superuser


def test_api_key_list_query_count_does_not_grow_with_rows(superuser_client, user):
    api_key_create(user=user, name="first")
    few = query_count(lambda: superuser_client.get(KEYS))
    for index in range(8):
        api_key_create(user=make_user(f"owner{index}"), name=f"key{index}")
    assert query_count(lambda: superuser_client.get(KEYS)) == few
