"""`POST /api/task-types/{type}/test/`: try one task type now with literal values."""
from __future__ import annotations

import pytest

from tests.conftest import make_integration

pytestmark = pytest.mark.django_db

RESULT_KEYS = {"status", "output", "error", "duration_ms"}


def trial(api, type_key: str, body: dict, **extra):
    return api.post(f"/api/task-types/{type_key}/test/", {"body": body, **extra}, format="json")


def test_transform_completes_with_the_expressions_result(api):
    response = trial(api, "transform", {"data": {"items": [{"id": 3}, {"id": 4}]}, "expression": "items[].id"})
    assert response.status_code == 200
    result = response.json()
    assert set(result) == RESULT_KEYS
    assert result["status"] == "completed"
    assert result["output"] == [3, 4]
    assert result["error"] is None
    assert isinstance(result["duration_ms"], int) and result["duration_ms"] >= 0


def test_condition_true_completes_with_its_value(api):
    response = trial(api, "condition", {"data": {"total": 12}, "expression": "total > `10`"})
    assert response.status_code == 200
    assert response.json()["status"] == "completed"
    assert response.json()["output"] == {"value": True}


@pytest.mark.parametrize("expression", ["total > `100`", "missing", "empty"])
def test_condition_false_fails_the_task_not_the_request(api, expression):
    response = trial(api, "condition", {"data": {"total": 12, "empty": []}, "expression": expression})
    assert response.status_code == 200
    result = response.json()
    assert result["status"] == "failed"
    assert result["output"] is None
    assert "condition is false" in result["error"]


def test_fail_fails_with_its_message(api):
    response = trial(api, "fail", {"message": "no stock"})
    assert response.status_code == 200
    assert response.json()["status"] == "failed"
    assert response.json()["error"] == "no stock"


def test_fail_without_a_message_uses_the_default(api):
    result = trial(api, "fail", {}).json()
    assert result["status"] == "failed"
    assert result["error"] == "failed"


def test_response_returns_status_headers_and_body_with_defaults(api):
    full = trial(api, "response", {"status_code": 201, "headers": {"X-A": "1"}, "body": {"ok": True}}).json()
    assert full["status"] == "completed"
    assert full["output"] == {"status_code": 201, "headers": {"X-A": "1"}, "body": {"ok": True}}
    minimal = trial(api, "response", {"body": "hi"}).json()
    assert minimal["output"] == {"status_code": 200, "headers": {}, "body": "hi"}


def test_delay_waits_and_completes_with_an_empty_object(api):
    result = trial(api, "delay", {"seconds": 0.2}).json()
    assert result["status"] == "completed"
    assert result["output"] == {}
    assert result["duration_ms"] >= 200  # it really slept


def test_a_failing_expression_is_a_failed_result(api):
    result = trial(api, "transform", {"data": {"a": "text"}, "expression": "abs(a)"}).json()
    assert result["status"] == "failed"
    assert "expression failed" in result["error"]


def test_an_unknown_type_is_404(api):
    response = trial(api, "teleport", {})
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    assert "teleport" in response.json()["message"]


@pytest.mark.parametrize("type_key, body, field", [
    ("transform", {"data": 1}, "body.expression"),                          # required, missing
    ("transform", {"data": 1, "expression": "[["}, "body.expression"),      # not a JMESPath expression
    ("transform", {"data": 1, "expression": "@", "colour": "red"}, "body.colour"),  # unknown field
    ("delay", {"seconds": "soon"}, "body.seconds"),                         # wrong type
    ("delay", {"seconds": -1}, "body.seconds"),                             # below the minimum
    ("response", {"status_code": 99}, "body.status_code"),                  # out of range
    ("fail", {"message": 42}, "body.message"),                              # wrong type
])
def test_a_bad_body_is_400_naming_the_field(api, type_key, body, field):
    response = trial(api, type_key, body)
    assert response.status_code == 400
    error = response.json()
    assert error["code"] == "validation_error"
    assert field in error["details"], error


def test_a_body_that_is_not_an_object_is_400(api):
    response = api.post("/api/task-types/transform/test/", {"body": [1, 2]}, format="json")
    assert response.status_code == 400
    assert "body" in response.json()["details"]


def test_send_tweet_without_an_integration_is_400_naming_integration(api):
    response = trial(api, "send_tweet", {"text": "hello"})
    assert response.status_code == 400
    assert "integration" in response.json()["details"]


def test_send_tweet_with_another_users_integration_is_400_naming_integration(api, other_user):
    theirs = make_integration(other_user, provider="twitter")
    response = trial(api, "send_tweet", {"text": "hello"}, integration=str(theirs.id))
    assert response.status_code == 400
    assert "integration" in response.json()["details"]


def test_send_tweet_with_an_integration_of_another_provider_is_400_naming_integration(api, user):
    smtp = make_integration(user, provider="smtp")
    response = trial(api, "send_tweet", {"text": "hello"}, integration=str(smtp.id))
    assert response.status_code == 400
    assert "integration" in response.json()["details"]


def test_an_integration_for_a_type_without_provider_is_400(api, user):
    twitter = make_integration(user, provider="twitter")
    response = trial(api, "transform", {"data": 1, "expression": "@"}, integration=str(twitter.id))
    assert response.status_code == 400
    assert "integration" in response.json()["details"]


def test_trial_needs_authentication(anon):
    response = anon.post("/api/task-types/transform/test/", {"body": {"data": 1, "expression": "@"}}, format="json")
    assert response.status_code == 401
