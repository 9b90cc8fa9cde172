"""Management commands: `demo` (idempotent) and `rotate_encryption_keys`."""
from __future__ import annotations

import io

import pytest
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from accounts.models import ApiKey, User
from integrations.encryption import decrypt_json
from integrations.models import Integration
from integrations.services import integration_credentials
from interactions.demo import DEMO_INPUT, DEMO_INTERACTION, DEMO_TASKS
from interactions.engine.inputs import check_input
from interactions.models import Interaction
from interactions.services import definition_parse
from tests.conftest import TWITTER_CREDENTIALS, make_integration


@pytest.fixture
def state_dir(tmp_path, settings, monkeypatch):
    monkeypatch.delenv("JUNCTION_DEMO_PASSWORD", raising=False)
    settings.LOCAL_STATE_DIR = tmp_path
    return tmp_path


def _demo() -> str:
    out = io.StringIO()
    call_command("demo", stdout=out)
    return out.getvalue()


def test_demo_creates_user_key_and_active_interaction_once(db, state_dir):
    first = _demo()
    second = _demo()
    user = User.objects.get(username="demo")
    assert user.is_superuser
    assert ApiKey.objects.filter(user=user).count() == 1
    interaction = Interaction.objects.get(user=user, name=DEMO_INTERACTION)
    assert interaction.is_active and interaction.current_version.number == 1
    password = (state_dir / "demo_password").read_text().strip()
    assert f"Password:  {password}" in first and f"Password:  {password}" in second
    response = APIClient().post("/api/auth/login/", {"username": "demo", "password": password}, format="json")
    assert response.status_code == 200


def test_demo_password_comes_from_the_environment(db, state_dir, monkeypatch):
    monkeypatch.setenv("JUNCTION_DEMO_PASSWORD", "a-chosen-demo-password")
    _demo()
    assert User.objects.get(username="demo").check_password("a-chosen-demo-password")


def test_demo_keeps_the_clear_key_only_in_embedded_mode(db, state_dir, settings):
    settings.EMBEDDED = False
    _demo()
    assert not (state_dir / "demo_api_key").exists()
    settings.EMBEDDED = True
    out = _demo()
    key = (state_dir / "demo_api_key").read_text().strip()
    assert f"Api-Key {key}" in out
    response = APIClient().get("/api/auth/me/", HTTP_AUTHORIZATION=f"Api-Key {key}")
    assert response.status_code == 200 and response.json()["username"] == "demo"


def test_demo_definition_is_valid_and_its_example_input_fills_the_blanks(db, user):
    definition = definition_parse(user=user, tasks=DEMO_TASKS)
    assert {task.type for task in definition.tasks.values()} <= {"transform", "condition", "response"}
    assert check_input(definition.blanks, DEMO_INPUT) == {}


def test_rotate_encryption_keys_reencrypts_with_the_first_key(db, user, settings):
    integration = make_integration(user, provider="twitter")
    other = make_integration(user, provider="smtp")
    new_key = Fernet.generate_key().decode()
    settings.JUNCTION_ENCRYPTION_KEYS = [new_key, *settings.JUNCTION_ENCRYPTION_KEYS]
    out = io.StringIO()
    call_command("rotate_encryption_keys", stdout=out)
    assert "2 integration(s)" in out.getvalue()
    settings.JUNCTION_ENCRYPTION_KEYS = [new_key]  # the old keys can go now
    integration.refresh_from_db()
    other.refresh_from_db()
    assert integration_credentials(integration=integration)["consumer_secret"] == TWITTER_CREDENTIALS["consumer_secret"]
    assert decrypt_json(other.secrets_encrypted)["password"]


def test_rotate_encryption_keys_fails_clearly_without_the_old_key(db, user, settings):
    integration = make_integration(user)
    before = Integration.objects.get(pk=integration.pk).secrets_encrypted
    settings.JUNCTION_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    with pytest.raises(CommandError, match="cannot be decrypted"):
        call_command("rotate_encryption_keys", stdout=io.StringIO())
    assert Integration.objects.get(pk=integration.pk).secrets_encrypted == before
