"""The canvas pages' server side: the layout kept per version, what the pages hand the script
(interactions/admin_canvas.py), and errors placed by path. The script itself: test_canvas_browser.py."""
from __future__ import annotations

import json

import pytest
from django.test import Client

from accounts.models import User
from interactions import services
from interactions.models import Interaction
from interactions.sessions import session_start
from tests.conftest import SIMPLE_TASKS, make_interaction
from tests.test_admin import _change_form_data

pytestmark = pytest.mark.django_db

TWO = {
    "first": {"type": "transform", "body": {"data": None, "expression": "@"}},
    "second": {"type": "transform", "body": {"data": {"$ref": "first"}, "expression": "@"},
               "execute_after": {"first": ["completed"]}},
}


@pytest.fixture
def admin_client(db) -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser(username="root", email="root@example.com", password="x"))
    return client


def page_config(response, element_id: str) -> dict:
    """The JSON a page hands the canvas script (`json_script` with this id)."""
    html = response.content.decode()
    start = html.index(f'<script id="{element_id}" type="application/json">')
    start = html.index(">", start) + 1
    return json.loads(html[start:html.index("</script>", start)])


def test_the_layout_is_kept_with_the_version_and_cleaned(user):
    interaction = services.interaction_create(user=user, name="laid-out", tasks=TWO, layout={
        "first": {"x": 10, "y": 20}, "second": {"x": 10.04, "y": 120}, "gone": {"x": 1, "y": 1},
        "bad": "not a point",
    })
    assert interaction.current_version.layout == {"first": {"x": 10.0, "y": 20.0}, "second": {"x": 10.0, "y": 120.0}}


def test_moving_tasks_alone_updates_the_layout_without_a_new_version(user):
    interaction = services.interaction_create(user=user, name="moved", tasks=TWO, layout={"first": {"x": 0, "y": 0}})
    services.interaction_update(interaction=interaction, tasks=TWO, layout={"first": {"x": 50, "y": 5}})
    interaction.refresh_from_db()
    assert interaction.current_version.number == 1
    assert interaction.current_version.layout == {"first": {"x": 50.0, "y": 5.0}}


def test_a_new_version_carries_its_own_layout_and_the_old_one_keeps_its(user):
    interaction = services.interaction_create(user=user, name="versions", tasks=TWO, layout={"first": {"x": 0, "y": 0}})
    changed = {**TWO, "third": {"type": "fail"}}
    services.interaction_update(interaction=interaction, tasks=changed, layout={"third": {"x": 300, "y": 0}})
    interaction.refresh_from_db()
    first, second = interaction.versions.order_by("number")
    assert (first.layout, second.layout) == ({"first": {"x": 0.0, "y": 0.0}}, {"third": {"x": 300.0, "y": 0.0}})


def test_the_api_representation_has_no_layout(api, user):
    interaction = services.interaction_create(user=user, name="api", tasks=TWO, layout={"first": {"x": 1, "y": 2}})
    body = api.get(f"/api/interactions/{interaction.pk}/").json()
    assert "layout" not in body and body["tasks"] == TWO


def test_the_admin_saves_the_posted_layout(admin_client, user):
    url = "/admin/interactions/interaction/add/"
    data = _change_form_data(admin_client, url, user=str(user.pk), name="drawn", tasks=json.dumps(TWO),
                             layout=json.dumps({"first": {"x": 5, "y": 6}, "second": {"x": 5, "y": 106}}))
    response = admin_client.post(url, data)
    assert response.status_code == 302
    version = Interaction.objects.get(name="drawn").current_version
    assert version.tasks == TWO and version.layout == {"first": {"x": 5.0, "y": 6.0}, "second": {"x": 5.0, "y": 106.0}}


def test_the_change_page_hands_the_canvas_its_layout_and_urls(admin_client, user):
    interaction = services.interaction_create(user=user, name="cfg", tasks=TWO, layout={"first": {"x": 7, "y": 8}})
    response = admin_client.get(f"/admin/interactions/interaction/{interaction.pk}/change/")
    config = page_config(response, "canvas-config")
    assert config["interaction"] == {"id": str(interaction.pk), "name": "cfg", "isActive": False}
    assert config["layout"] == {"first": {"x": 7.0, "y": 8.0}}
    assert config["errors"] == {}
    assert config["urls"]["run"] == f"/api/interactions/{interaction.pk}/run/"
    assert config["urls"]["taskTypes"] == "/api/task-types/"
    assert b"interactions/canvas/canvas.js" in response.content


def test_validation_errors_reach_the_canvas_by_task_and_field(admin_client, user):
    interaction = make_interaction(user, tasks=SIMPLE_TASKS)
    url = f"/admin/interactions/interaction/{interaction.pk}/change/"
    broken = {"fetch": {"type": "http_request", "body": {"url": 5}, "retries": 99}}
    response = admin_client.post(url, _change_form_data(admin_client, url, tasks=json.dumps(broken),
                                                         layout=json.dumps({"fetch": {"x": 1, "y": 2}})))
    assert response.status_code == 200
    config = page_config(response, "canvas-config")
    assert set(config["errors"]) == {"tasks.fetch.body.url", "tasks.fetch.retries"}
    assert config["layout"] == {"fetch": {"x": 1, "y": 2}}  # what was posted, not lost on the error


def test_the_session_page_hands_the_viewer_the_version_it_ran(admin_client, user):
    interaction = make_interaction(user, tasks=TWO, active=True)
    session, _ = session_start(user=user, interaction=interaction, data={"first": {"data": {"a": 1}}})
    services.interaction_update(interaction=interaction, tasks={"only": {"type": "fail"}})
    response = admin_client.get(f"/admin/interactions/session/{session.pk}/change/")
    config = page_config(response, "session-viewer-config")
    assert config["session"] == str(session.pk)
    assert config["tasks"] == TWO
    assert config["urls"]["sessionEvents"].replace(config["urls"]["placeholder"], str(session.pk)) == (
        f"/api/sessions/{session.pk}/events/"
    )


def test_task_types_describe_an_example_for_every_field(api):
    for task_type in api.get("/api/task-types/").json():
        for field in task_type["fields"]:
            assert "example" in field, (task_type["type"], field["name"])
