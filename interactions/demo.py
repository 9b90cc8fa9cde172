"""The demo account and interaction that `manage.py demo` and `manage.py serve` set up.

Idempotent: running it again keeps the user, its key and the interaction, only making sure
the printed credentials work and the interaction is active.
"""
from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction

from accounts.models import ApiKey, User
from accounts.services import api_key_create, hash_api_key
from config.env import local_secret
from interactions.models import Interaction
from interactions.services import interaction_create, interaction_set_active

DEMO_USERNAME = "demo"
DEMO_EMAIL = "demo@example.com"
DEMO_KEY_NAME = "demo"
DEMO_INTERACTION = "demo-order-summary"
PASSWORD_FILE = "demo_password"
API_KEY_FILE = "demo_api_key"

# A blank order comes in; `order` summarises it, `check` branches on the total, and one of the
# two `response` tasks shapes the HTTP answer of a waited call. Simple types only: it runs
# without any integration, network or sandbox.
DEMO_TASKS: dict[str, Any] = {
    "order": {
        "type": "transform",
        "body": {
            "data": None,
            "expression": "{customer: customer, item_count: length(items), total: sum(items[].price)}",
        },
    },
    "check": {
        "type": "condition",
        "body": {"data": {"$ref": "order"}, "expression": "total > `0`"},
        "execute_after": {"order": ["completed"]},
    },
    "accepted": {
        "type": "response",
        "body": {"status_code": 200, "body": {"$ref": "order"}},
        "execute_after": {"check": ["completed"]},
    },
    "rejected": {
        "type": "response",
        "body": {
            "status_code": 422,
            "body": {"error": "The order total must be above 0.", "order": {"$ref": "order"}},
        },
        "execute_after": {"check": ["failed"]},
    },
}
DEMO_DESCRIPTION = "Summarise an order; answer 200 with the summary, or 422 when its total is not above 0."
DEMO_INPUT: dict[str, Any] = {
    "order": {"data": {"customer": "Ada", "items": [{"sku": "tea", "price": 4.5}, {"sku": "cake", "price": 3}]}}
}


@dataclass(frozen=True)
class DemoSetup:
    user: User
    password: str
    interaction: Interaction
    api_key: ApiKey
    key: str | None  # the clear key when known: just created, or kept locally (embedded mode)


def _state_dir() -> Path:
    return Path(settings.LOCAL_STATE_DIR)


def demo_password() -> str:
    """Return JUNCTION_DEMO_PASSWORD, or the generated password kept in the local state dir."""
    return os.environ.get("JUNCTION_DEMO_PASSWORD") or local_secret(
        _state_dir() / PASSWORD_FILE, lambda: secrets.token_urlsafe(12)
    )


def _ensure_user(password: str) -> User:
    user = User.objects.filter(username=DEMO_USERNAME).first()
    if user is None:
        return User.objects.create_superuser(username=DEMO_USERNAME, email=DEMO_EMAIL, password=password)
    if not user.check_password(password):
        # The printed credentials must work: the demo account's password is the configured one.
        user.set_password(password)
        user.save(update_fields=["password", "updated_at"])
    return user


def _stored_key() -> str | None:
    path = _state_dir() / API_KEY_FILE
    return path.read_text().strip() if path.exists() else None


def _store_key(key: str) -> None:
    path = _state_dir() / API_KEY_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key)


def _ensure_api_key(user: User) -> tuple[ApiKey, str | None]:
    """Reuse the demo key when it is still live; the clear key is only kept in embedded mode."""
    live = ApiKey.objects.filter(user=user, revoked_at__isnull=True)
    stored = _stored_key() if settings.EMBEDDED else None
    if stored:
        match = live.filter(hashed_key=hash_api_key(stored)).first()
        if match is not None:
            return match, stored
    elif not settings.EMBEDDED:
        existing = live.filter(name=DEMO_KEY_NAME).first()
        if existing is not None:
            return existing, None  # its clear key was shown once, when it was created
    created = api_key_create(user=user, name=DEMO_KEY_NAME)
    if settings.EMBEDDED:
        _store_key(created.key)
    return created.api_key, created.key


def _ensure_interaction(user: User) -> Interaction:
    interaction = Interaction.objects.filter(user=user, name=DEMO_INTERACTION).first()
    if interaction is None:
        interaction = interaction_create(
            user=user, name=DEMO_INTERACTION, description=DEMO_DESCRIPTION, tasks=DEMO_TASKS
        )
    if not interaction.is_active:
        interaction = interaction_set_active(interaction=interaction, active=True)
    return interaction


def demo_ensure() -> DemoSetup:
    """Create (or find) the demo superuser, its API key and the active demo interaction."""
    password = demo_password()
    with transaction.atomic():
        user = _ensure_user(password)
        api_key, key = _ensure_api_key(user)
        interaction = _ensure_interaction(user)
    return DemoSetup(user=user, password=password, interaction=interaction, api_key=api_key, key=key)


def _shell_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def demo_instructions(*, setup: DemoSetup, base_url: str) -> str:
    """Return the text that tells a new user how to log in and call the demo interaction."""
    import json

    base_url = base_url.rstrip("/")
    login = json.dumps({"username": setup.user.username, "password": setup.password})
    run_url = f"{base_url}/api/interactions/{setup.interaction.id}/run/"
    if setup.key:
        auth = f"Authorization: Api-Key {setup.key}"
        key_line = f"  API key:   {setup.key}"
    else:
        auth = "Authorization: Bearer <access token from the login call>"
        key_line = f"  API key:   {setup.api_key.prefix}… (its clear value was shown once, when it was created)"
    return "\n".join(
        [
            f"  API:       {base_url}/api/   (OpenAPI docs: {base_url}/api/docs/)",
            f"  Admin:     {base_url}/admin/",
            f"  User:      {setup.user.username}",
            f"  Password:  {setup.password}",
            key_line,
            "",
            "Log in (returns a JWT access and refresh token):",
            f"  curl -s -X POST {base_url}/api/auth/login/ -H 'Content-Type: application/json' "
            f"-d {_shell_quote(login)}",
            "",
            f"Call the demo interaction '{setup.interaction.name}' and wait up to 10 s for its answer:",
            f"  curl -s -X POST {run_url} -H {_shell_quote(auth)} -H 'Content-Type: application/json' "
            f"-H 'Prefer: wait=10' -d {_shell_quote(json.dumps(DEMO_INPUT))}",
        ]
    )
