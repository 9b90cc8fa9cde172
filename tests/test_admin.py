"""The Django admin: pages load, secrets stay hidden, definitions are validated and versioned."""
from __future__ import annotations

import json

import pytest
from django.test import Client

from accounts.models import User
from accounts.services import api_key_create
from interactions.models import Interaction
from tests.conftest import SIMPLE_TASKS, TWITTER_CREDENTIALS, make_integration, make_interaction


@pytest.fixture
def admin_client(db) -> Client:
    admin = User.objects.create_superuser(username="root", email="root@example.com", password="x")
    client = Client()
    client.force_login(admin)
    return client


def _change_form_data(client: Client, url: str, **changes) -> dict:
    """The change form's current values as a browser would post them, with `changes` applied."""
    response = client.get(url)
    assert response.status_code == 200
    data = {}
    for form in [response.context["adminform"].form, *response.context["inline_admin_formsets"]]:
        form = getattr(form, "formset", form)
        if hasattr(form, "management_form"):
            for name, field in form.management_form.fields.items():
                data[f"{form.prefix}-{name}"] = form.management_form[name].value()
            continue
        for name in form.fields:
            value = form[name].value()
            if value is not None:
                data[name] = value  # BoundField.value() is already prepared (tasks: JSON text)
    data.update(changes)
    return data


@pytest.mark.parametrize(
    "url",
    [
        "/admin/",
        "/admin/accounts/user/",
        "/admin/accounts/apikey/",
        "/admin/integrations/integration/",
        "/admin/interactions/interaction/",
        "/admin/interactions/interaction/add/",
    ],
)
def test_admin_pages_load(admin_client, user, url):
    make_integration(user)
    make_interaction(user)
    api_key_create(user=user, name="ci")
    assert admin_client.get(url).status_code == 200


def test_object_change_pages_load(admin_client, user):
    key = api_key_create(user=user, name="ci").api_key
    interaction = make_interaction(user)
    for url in [
        f"/admin/accounts/user/{user.pk}/change/",
        f"/admin/accounts/apikey/{key.pk}/change/",
        f"/admin/interactions/interaction/{interaction.pk}/change/",
    ]:
        assert admin_client.get(url).status_code == 200, url


def test_integration_change_page_shows_no_secret(admin_client, user):
    integration = make_integration(user, provider="twitter")
    html = admin_client.get(f"/admin/integrations/integration/{integration.pk}/change/").content.decode()
    assert "consumer_key" in html and "********" in html
    for name in ("consumer_secret", "access_token_secret"):
        assert TWITTER_CREDENTIALS[name] not in html
    assert integration.secrets_encrypted not in html
    assert "secrets_encrypted" not in html


def test_integration_rename_keeps_secrets(admin_client, user):
    integration = make_integration(user, name="before")
    url = f"/admin/integrations/integration/{integration.pk}/change/"
    # As the browser posts the form: the non-secret values prefilled, the secrets left blank.
    response = admin_client.post(url, {"name": "after", "credential_consumer_key": TWITTER_CREDENTIALS["consumer_key"],
                                       "credential_access_token": TWITTER_CREDENTIALS["access_token"]})
    assert response.status_code == 302
    integration.refresh_from_db()
    assert integration.name == "after"
    from integrations.services import integration_credentials

    assert integration_credentials(integration=integration)["consumer_secret"] == TWITTER_CREDENTIALS["consumer_secret"]


def test_editing_tasks_in_admin_creates_a_new_version(admin_client, user):
    interaction = make_interaction(user)
    url = f"/admin/interactions/interaction/{interaction.pk}/change/"
    tasks = {**SIMPLE_TASKS, "shape": {"type": "transform", "body": {"data": None, "expression": "items[-1]"}}}
    response = admin_client.post(url, _change_form_data(admin_client, url, tasks=json.dumps(tasks)))
    assert response.status_code == 302, response.context["adminform"].form.errors
    interaction.refresh_from_db()
    assert interaction.current_version.number == 2
    assert interaction.current_version.tasks == tasks
    assert interaction.versions.count() == 2


def test_saving_unchanged_tasks_keeps_the_version(admin_client, user):
    interaction = make_interaction(user)
    url = f"/admin/interactions/interaction/{interaction.pk}/change/"
    response = admin_client.post(url, _change_form_data(admin_client, url, description="new words"))
    assert response.status_code == 302, response.context["adminform"].form.errors
    interaction.refresh_from_db()
    assert (interaction.description, interaction.current_version.number) == ("new words", 1)


def test_invalid_definition_shows_the_task_and_field(admin_client, user):
    interaction = make_interaction(user)
    url = f"/admin/interactions/interaction/{interaction.pk}/change/"
    tasks = {"shape": {"type": "transform", "body": {"data": None, "expression": "items[0]", "colour": "red"}}}
    response = admin_client.post(url, _change_form_data(admin_client, url, tasks=json.dumps(tasks)))
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors["tasks"]
    assert any("tasks.shape.body.colour" in error for error in errors), errors
    assert "tasks.shape.body.colour" in response.content.decode()
    interaction.refresh_from_db()
    assert interaction.current_version.number == 1


def test_add_interaction_in_admin(admin_client, user):
    url = "/admin/interactions/interaction/add/"
    data = _change_form_data(
        admin_client, url, user=str(user.pk), name="from-admin", tasks=json.dumps(SIMPLE_TASKS)
    )
    response = admin_client.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    created = Interaction.objects.get(user=user, name="from-admin")
    assert created.current_version.number == 1 and created.current_version.tasks == SIMPLE_TASKS


def test_activate_and_deactivate_actions(admin_client, user):
    interaction = make_interaction(user)
    changelist = "/admin/interactions/interaction/"
    response = admin_client.post(changelist, {"action": "activate", "_selected_action": [str(interaction.pk)]})
    assert response.status_code == 302
    interaction.refresh_from_db()
    assert interaction.is_active
    admin_client.post(changelist, {"action": "deactivate", "_selected_action": [str(interaction.pk)]})
    interaction.refresh_from_db()
    assert not interaction.is_active
    assert interaction.current_version.number == 1


def _session_with_runs(user):
    """A session recorded as the executor leaves it: one task completed, one failed."""
    from django.utils import timezone

    from interactions.models import Session, TaskRun

    interaction = make_interaction(user, active=True)
    now = timezone.now()
    session = Session.objects.create(
        user=user, interaction=interaction, version=interaction.current_version, input={},
        status=Session.Status.RUNNING, started_at=now,
    )
    TaskRun.objects.create(session=session, name="shape", status="completed", output={"marker": "out-1"},
                           attempts=1, started_at=now, finished_at=now, worker="celery@host-b")
    TaskRun.objects.create(session=session, name="check", status="pending")
    return session


def test_session_pages_show_tasks_read_only(admin_client, user):
    session = _session_with_runs(user)
    listing = admin_client.get("/admin/interactions/session/")
    assert listing.status_code == 200 and str(session.id) in listing.content.decode()
    page = admin_client.get(f"/admin/interactions/session/{session.pk}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "out-1" in html and "Pending" in html and "Completed" in html
    assert "celery@host-b" in html  # where the task ran (docs/multi-host.md)
    # Read-only: a POST to the change page does not change the record.
    admin_client.post(f"/admin/interactions/session/{session.pk}/change/", {"status": "completed"})
    session.refresh_from_db()
    assert session.status == "running"


def test_session_cancel_action(admin_client, user):
    session = _session_with_runs(user)
    response = admin_client.post(
        "/admin/interactions/session/", {"action": "cancel", "_selected_action": [str(session.pk)]}
    )
    assert response.status_code == 302
    session.refresh_from_db()
    assert session.status == "cancelled"
    assert session.task_runs.get(name="check").status == "cancelled"
    assert session.task_runs.get(name="shape").status == "completed"


def test_interaction_change_page_shows_the_celery_plan(admin_client, user):
    interaction = make_interaction(user)
    html = admin_client.get(f"/admin/interactions/interaction/{interaction.pk}/change/").content.decode()
    assert "chain(shape, check)" in html
