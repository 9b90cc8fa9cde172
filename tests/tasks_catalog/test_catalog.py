"""The task catalog over the API (SPEC 2.2): every built-in type, its fields and output."""
from __future__ import annotations

import pytest

from tasks_catalog.fields import FIELD_TYPES
from tests.accounts.test_auth import assert_error

BUILTINS = {
    "http_request": {"method", "url", "headers", "query", "json", "timeout", "ok_statuses"},
    "send_tweet": {"text"},
    "send_email": {"to", "subject", "text", "html"},
    "code": {"code", "inputs"},
    "transform": {"data", "expression"},
    "condition": {"data", "expression"},
    "delay": {"seconds"},
    "fail": {"message"},
    "response": {"status_code", "body", "headers"},
}
PROVIDERS = {"send_tweet": "twitter", "send_email": "smtp"}


@pytest.mark.django_db
class TestCatalog:
    def test_list_has_every_builtin_with_its_fields(self, api):
        response = api.get("/api/task-types/")
        assert response.status_code == 200
        items = {item["type"]: item for item in response.json()}
        assert set(BUILTINS) <= set(items)
        for key, fields in BUILTINS.items():
            assert {f["name"] for f in items[key]["fields"]} == fields, key

    def test_each_item_has_the_documented_shape(self, api):
        for item in api.get("/api/task-types/").json():
            assert {"type", "name", "description", "provider", "fields", "output"} <= set(item)
            assert item["name"] and item["description"]
            assert set(item["output"]) == {"description", "schema"}
            for field in item["fields"]:
                assert {"name", "type", "required", "description", "default"} <= set(field)
                assert field["type"] in FIELD_TYPES

    def test_providers_of_types(self, api):
        items = {item["type"]: item for item in api.get("/api/task-types/").json()}
        for key in BUILTINS:
            assert items[key]["provider"] == PROVIDERS.get(key), key

    def test_required_fields(self, api):
        items = {item["type"]: item for item in api.get("/api/task-types/").json()}
        required = {k: {f["name"] for f in v["fields"] if f["required"]} for k, v in items.items()}
        assert required["http_request"] == {"url"}
        assert required["send_tweet"] == {"text"}
        assert required["send_email"] == {"to", "subject"}
        assert required["transform"] == {"data", "expression"}
        assert required["delay"] == {"seconds"}

    def test_tweet_text_limits_are_described(self, api):
        text = api.get("/api/task-types/send_tweet/").json()["fields"][0]
        assert text["min_length"] == 1 and text["max_length"] == 280

    def test_delay_maximum_follows_the_setting(self, api, settings):
        settings.JUNCTION_MAX_DELAY = 42
        seconds = api.get("/api/task-types/delay/").json()["fields"][0]
        assert seconds["maximum"] == 42

    def test_retrieve_one_type(self, api):
        response = api.get("/api/task-types/http_request/")
        assert response.status_code == 200
        body = response.json()
        assert body["type"] == "http_request"
        assert body["output"]["schema"]["properties"].keys() == {"status_code", "headers", "body"}

    def test_unknown_type_is_404_with_error_shape(self, api):
        body = assert_error(api.get("/api/task-types/nope/"), 404, "not_found")
        assert "nope" in body["message"]

    def test_catalog_is_read_only(self, api):
        assert_error(api.post("/api/task-types/", {"type": "x"}, format="json"), 405)
        assert_error(api.delete("/api/task-types/delay/"), 405)

    def test_needs_authentication(self, anon):
        assert_error(anon.get("/api/task-types/"), 401)
        assert_error(anon.get("/api/task-types/delay/"), 401)
