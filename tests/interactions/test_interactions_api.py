"""The interactions API (SPEC 2.4): CRUD, immutable versions, activation, the endpoint description."""
from __future__ import annotations

import copy
import json
import shlex

import jsonschema
import pytest

from interactions.models import Interaction, InteractionVersion
from tests.accounts.test_auth import assert_error
from tests.conftest import SIMPLE_TASKS, make_integration

FIELDS = {"id", "name", "description", "is_active", "version", "tasks", "endpoint_url", "app", "access",
          "allowed_groups", "created_at", "updated_at"}

CHANGED_TASKS = {
    **SIMPLE_TASKS,
    "wait": {"type": "delay", "body": {"seconds": 0}, "execute_after": {"check": ["completed", "failed"]}},
}


def create(api, name="flow", tasks=SIMPLE_TASKS, **extra):
    response = api.post("/api/interactions/", {"name": name, "tasks": tasks, **extra}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


@pytest.mark.django_db
class TestCrud:
    def test_create(self, api):
        body = create(api, description="does things")
        assert set(body) == FIELDS
        assert body["name"] == "flow" and body["description"] == "does things"
        assert body["version"] == 1
        assert body["is_active"] is False
        assert body["tasks"] == SIMPLE_TASKS
        assert body["endpoint_url"] == f"http://testserver/api/interactions/{body['id']}/run/"
        interaction = Interaction.objects.get(id=body["id"])
        assert interaction.versions.count() == 1

    def test_create_requires_name_and_tasks(self, api):
        body = assert_error(api.post("/api/interactions/", {}, format="json"), 400, "validation_error")
        assert {"name", "tasks"} <= set(body["details"])

    def test_names_are_unique_per_user(self, api, other_api):
        create(api, name="same")
        body = assert_error(api.post("/api/interactions/", {"name": "same", "tasks": SIMPLE_TASKS}, format="json"),
                            400, "validation_error")
        assert "name" in body["details"]
        assert Interaction.objects.filter(name="same").count() == 1
        create(other_api, name="same")

    def test_list_is_paginated_and_filterable(self, api):
        first = create(api, name="one")
        create(api, name="two")
        api.post(f"/api/interactions/{first['id']}/activate/")
        body = api.get("/api/interactions/").json()
        assert body["count"] == 2 and {"next", "previous", "results"} <= set(body)
        assert {item["name"] for item in body["results"]} == {"one", "two"}
        active = api.get("/api/interactions/?is_active=true").json()
        assert [item["name"] for item in active["results"]] == ["one"]

    def test_retrieve(self, api):
        created = create(api)
        response = api.get(f"/api/interactions/{created['id']}/")
        assert response.status_code == 200
        assert response.json() == created

    def test_delete(self, api):
        created = create(api)
        assert api.delete(f"/api/interactions/{created['id']}/").status_code == 204
        assert not Interaction.objects.filter(id=created["id"]).exists()
        assert not InteractionVersion.objects.filter(interaction_id=created["id"]).exists()
        assert_error(api.get(f"/api/interactions/{created['id']}/"), 404, "not_found")

    def test_definition_with_integration_round_trips(self, api, user):
        twitter = make_integration(user)
        tasks = {"t": {"type": "send_tweet", "integration": str(twitter.id), "body": {"text": None},
                       "retries": 2, "timeout": 10}}
        body = create(api, tasks=tasks)
        assert body["tasks"] == tasks


@pytest.mark.django_db
class TestVersions:
    def test_put_with_changed_tasks_adds_a_version(self, api):
        created = create(api)
        response = api.put(f"/api/interactions/{created['id']}/",
                           {"name": "flow", "tasks": CHANGED_TASKS}, format="json")
        assert response.status_code == 200, response.content
        body = response.json()
        assert body["version"] == 2
        assert body["tasks"] == CHANGED_TASKS
        assert body["id"] == created["id"]
        assert body["endpoint_url"] == created["endpoint_url"]

    def test_patch_with_changed_tasks_adds_a_version(self, api):
        created = create(api)
        body = api.patch(f"/api/interactions/{created['id']}/", {"tasks": CHANGED_TASKS}, format="json").json()
        assert body["version"] == 2
        assert body["id"] == created["id"] and body["endpoint_url"] == created["endpoint_url"]
        assert body["name"] == "flow"

    def test_unchanged_tasks_add_no_version(self, api):
        created = create(api)
        body = api.put(f"/api/interactions/{created['id']}/",
                       {"name": "flow", "tasks": copy.deepcopy(SIMPLE_TASKS)}, format="json").json()
        assert body["version"] == 1
        assert InteractionVersion.objects.filter(interaction_id=created["id"]).count() == 1

    def test_name_only_change_adds_no_version(self, api):
        created = create(api)
        response = api.patch(f"/api/interactions/{created['id']}/",
                             {"name": "renamed", "description": "new"}, format="json")
        assert response.status_code == 200, response.content
        body = response.json()
        assert body["name"] == "renamed" and body["description"] == "new"
        assert body["version"] == 1 and body["tasks"] == SIMPLE_TASKS

    def test_patch_does_not_reset_description(self, api):
        created = create(api, description="kept")
        body = api.patch(f"/api/interactions/{created['id']}/", {"name": "x"}, format="json").json()
        assert body["description"] == "kept"

    def test_rename_to_a_taken_name_is_400(self, api):
        create(api, name="one")
        two = create(api, name="two")
        body = assert_error(api.patch(f"/api/interactions/{two['id']}/", {"name": "one"}, format="json"), 400)
        assert "name" in body["details"]
        assert Interaction.objects.get(id=two["id"]).name == "two"

    def test_versions_are_listed_newest_first_and_immutable(self, api):
        created = create(api)
        api.patch(f"/api/interactions/{created['id']}/", {"tasks": CHANGED_TASKS}, format="json")
        api.patch(f"/api/interactions/{created['id']}/", {"tasks": SIMPLE_TASKS}, format="json")
        response = api.get(f"/api/interactions/{created['id']}/versions/")
        assert response.status_code == 200
        body = response.json()
        assert body["count"] == 3
        assert [v["version"] for v in body["results"]] == [3, 2, 1]
        assert body["results"][0]["tasks"] == SIMPLE_TASKS
        assert body["results"][1]["tasks"] == CHANGED_TASKS
        assert body["results"][2]["tasks"] == SIMPLE_TASKS
        assert len({v["id"] for v in body["results"]}) == 3
        assert api.get(f"/api/interactions/{created['id']}/").json()["version"] == 3

    def test_rejected_update_adds_no_version(self, api):
        created = create(api)
        assert_error(api.patch(f"/api/interactions/{created['id']}/",
                               {"tasks": {"a": {"type": "nope"}}}, format="json"), 400)
        assert api.get(f"/api/interactions/{created['id']}/versions/").json()["count"] == 1


@pytest.mark.django_db
class TestActivation:
    def test_activate_and_deactivate(self, api):
        created = create(api)
        response = api.post(f"/api/interactions/{created['id']}/activate/")
        assert response.status_code == 200
        assert response.json()["is_active"] is True
        assert Interaction.objects.get(id=created["id"]).is_active
        response = api.post(f"/api/interactions/{created['id']}/deactivate/")
        assert response.status_code == 200
        assert response.json()["is_active"] is False
        assert not Interaction.objects.get(id=created["id"]).is_active

    def test_activation_adds_no_version(self, api):
        created = create(api)
        assert api.post(f"/api/interactions/{created['id']}/activate/").json()["version"] == 1

    def test_activation_is_idempotent(self, api):
        created = create(api)
        api.post(f"/api/interactions/{created['id']}/activate/")
        assert api.post(f"/api/interactions/{created['id']}/activate/").json()["is_active"] is True

    def test_activation_is_post_only(self, api):
        created = create(api)
        assert_error(api.get(f"/api/interactions/{created['id']}/activate/"), 405)


ENDPOINT_TASKS = {
    "fetch": {"type": "http_request", "body": {"method": "GET", "url": None, "timeout": None}},
    "wait": {"type": "delay", "body": {"seconds": 0}, "execute_after": {"fetch": ["completed"]}},
    "shape": {"type": "transform", "body": {"data": {"$ref": "fetch.body"}},
              "execute_after": {"fetch": ["completed"]}},
}


@pytest.mark.django_db
class TestEndpoint:
    def test_body_is_built_from_the_blanks(self, api):
        created = create(api, tasks=ENDPOINT_TASKS)
        response = api.get(f"/api/interactions/{created['id']}/endpoint/")
        assert response.status_code == 200, response.content
        body = response.json()
        assert body["method"] == "POST"
        assert body["url"] == created["endpoint_url"]
        # url: null; timeout: null (optional blank); shape.expression: required and left out.
        assert set(body["body"]) == {"fetch", "shape"}
        assert set(body["body"]["fetch"]) == {"url", "timeout"}
        assert set(body["body"]["shape"]) == {"expression"}
        assert isinstance(body["body"]["fetch"]["url"], str)
        assert "Authorization" in body["headers"]

    def test_schema_accepts_the_example_and_rejects_bad_bodies(self, api):
        created = create(api, tasks=ENDPOINT_TASKS)
        body = api.get(f"/api/interactions/{created['id']}/endpoint/").json()
        schema = body["schema"]
        jsonschema.Draft202012Validator.check_schema(schema)
        validator = jsonschema.Draft202012Validator(schema)
        validator.validate(body["body"])
        assert schema["properties"]["fetch"]["required"] == ["url"]
        assert set(schema["required"]) == {"fetch", "shape"}
        assert not validator.is_valid({"fetch": {"url": 3}, "shape": {"expression": "@"}})
        assert not validator.is_valid({"fetch": {"url": "x"}, "shape": {"expression": "@"}, "wait": {}})
        assert not validator.is_valid({"fetch": {"timeout": 1}, "shape": {"expression": "@"}})
        assert validator.is_valid({"fetch": {"url": "https://a.example"}, "shape": {"expression": "x"}})

    def test_curl_is_a_ready_command(self, api):
        created = create(api, tasks=ENDPOINT_TASKS)
        body = api.get(f"/api/interactions/{created['id']}/endpoint/").json()
        argv = shlex.split(body["curl"])
        assert argv[0] == "curl"
        assert body["url"] in argv
        assert argv[argv.index("-X") + 1] == "POST"
        assert json.loads(argv[argv.index("-d") + 1]) == body["body"]
        headers = [argv[i + 1] for i, arg in enumerate(argv) if arg == "-H"]
        assert "Content-Type: application/json" in headers
        assert any(h.startswith("Authorization: ") for h in headers)

    def test_curl_quotes_single_quotes_in_examples(self, api, user):
        # An example value with a quote must survive shell quoting.
        created = create(api, tasks={"c": {"type": "code", "body": {"code": None}}})
        body = api.get(f"/api/interactions/{created['id']}/endpoint/").json()
        argv = shlex.split(body["curl"])
        assert json.loads(argv[argv.index("-d") + 1]) == body["body"]
        assert "'" in body["body"]["c"]["code"]

    def test_no_blanks_means_an_empty_body(self, api):
        created = create(api, tasks={"w": {"type": "delay", "body": {"seconds": 1}}})
        body = api.get(f"/api/interactions/{created['id']}/endpoint/").json()
        assert body["body"] == {}
        jsonschema.validate({}, body["schema"])

    def test_endpoint_follows_the_latest_version(self, api):
        created = create(api, tasks={"w": {"type": "delay", "body": {"seconds": 1}}})
        api.patch(f"/api/interactions/{created['id']}/",
                  {"tasks": {"w": {"type": "delay", "body": {"seconds": None}}}}, format="json")
        body = api.get(f"/api/interactions/{created['id']}/endpoint/").json()
        assert set(body["body"]) == {"w"} and "seconds" in body["body"]["w"]
