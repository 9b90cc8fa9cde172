"""One error shape `{code, message, details}` for every 4xx the API returns (SPEC 2)."""
from __future__ import annotations

import json
import uuid

import pytest

from config.api_errors import flatten_details
from tests.accounts.test_auth import assert_error


@pytest.mark.django_db
class TestErrorShape:
    def test_unknown_api_route_is_404_json(self, api):
        body = assert_error(api.get("/api/no-such-thing/"), 404, "not_found")
        assert "/api/no-such-thing/" in body["message"]

    def test_unknown_api_route_is_404_json_for_anonymous(self, anon):
        assert_error(anon.get("/api/no-such-thing/"), 404, "not_found")

    def test_missing_object_is_404(self, api):
        assert_error(api.get(f"/api/interactions/{uuid.uuid4()}/"), 404, "not_found")
        assert_error(api.get(f"/api/integrations/{uuid.uuid4()}/"), 404, "not_found")

    def test_malformed_id_is_404_not_500(self, api):
        assert_error(api.get("/api/interactions/not-a-uuid/"), 404, "not_found")
        assert_error(api.get("/api/integrations/not-a-uuid/"), 404, "not_found")
        assert_error(api.delete("/api/auth/api-keys/not-a-uuid/"), 404, "not_found")

    def test_unknown_task_type_is_404(self, api):
        body = assert_error(api.get("/api/task-types/teleport/"), 404, "not_found")
        assert "teleport" in body["message"]

    def test_method_not_allowed_is_405(self, api):
        assert_error(api.put("/api/task-types/", {}, format="json"), 405, "method_not_allowed")

    def test_anonymous_is_401(self, anon):
        for url in ("/api/interactions/", "/api/integrations/", "/api/task-types/", "/api/providers/",
                    "/api/auth/api-keys/", "/api/auth/me/"):
            assert_error(anon.get(url), 401, "not_authenticated")

    def test_malformed_json_is_400(self, api):
        response = api.post("/api/interactions/", data="{not json", content_type="application/json")
        assert_error(response, 400, "parse_error")

    def test_unsupported_media_type_is_415(self, api):
        response = api.post("/api/interactions/", data="x", content_type="text/plain")
        assert_error(response, 415, "unsupported_media_type")

    def test_validation_error_names_fields_and_message_names_first(self, api):
        body = assert_error(api.post("/api/integrations/", {}, format="json"), 400, "validation_error")
        assert {"name", "provider", "credentials"} <= set(body["details"])
        assert all(isinstance(m, list) and all(isinstance(x, str) for x in m) for m in body["details"].values())
        assert body["message"].startswith("Invalid input.")
        assert "more" in body["message"]

    def test_non_api_404_is_not_forced_into_json(self, client):
        response = client.get("/definitely-not-here/")
        assert response.status_code == 404
        assert not response["Content-Type"].startswith("application/json")


class TestFlattenDetails:
    def test_nested_dicts_become_dotted_paths(self):
        assert flatten_details({"tasks": {"a": {"body": {"url": ["bad"]}}}}) == {"tasks.a.body.url": ["bad"]}

    def test_lists_of_dicts_use_indexes(self):
        assert flatten_details({"items": [{}, {"x": ["no"]}]}) == {"items.1.x": ["no"]}

    def test_non_field_errors_take_the_parent_path(self):
        assert flatten_details({"a": {"non_field_errors": ["m"]}}) == {"a": ["m"]}
        assert flatten_details(["top"]) == {"non_field_errors": ["top"]}

    def test_plain_string(self):
        assert flatten_details("oops") == {"non_field_errors": ["oops"]}


def test_server_error_under_api_is_json(rf):
    from config.api_errors import handler500

    response = handler500(rf.get("/api/interactions/"))
    assert response.status_code == 500
    body = json.loads(response.content)
    assert body == {"code": "server_error", "message": body["message"], "details": {}}
    assert "logged" in body["message"]

