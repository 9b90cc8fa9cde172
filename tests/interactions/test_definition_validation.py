"""Every validation rule of a definition (SPEC 2.4), through the API.

Each test posts a definition that breaks one rule and checks the 400: the error shape, the
`validation_error` code, and a `details` key naming the task and field with a message that
names the problem. Nothing is created on a rejected definition.
"""
from __future__ import annotations

import pytest

from interactions.models import Interaction
from tests.accounts.test_auth import assert_error
from tests.conftest import make_integration


def post(api, tasks, name="flow"):
    return api.post("/api/interactions/", {"name": name, "tasks": tasks}, format="json")


def rejected(response, key: str, *words: str) -> list[str]:
    """Assert a validation 400 whose details name `key`, with each of `words` in its messages."""
    body = assert_error(response, 400, "validation_error")
    assert key in body["details"], body["details"]
    messages = " ".join(body["details"][key])
    for word in words:
        assert word in messages, (word, messages)
    assert key in body["message"] or len(body["details"]) > 1
    assert not Interaction.objects.exists()
    return body["details"][key]


@pytest.mark.django_db
class TestTaskRules:
    def test_unknown_type(self, api):
        rejected(post(api, {"a": {"type": "teleport", "body": {}}}), "tasks.a.type", "teleport")

    def test_missing_type(self, api):
        rejected(post(api, {"a": {"body": {"seconds": 1}}}), "tasks.a.type", "required")

    def test_unknown_field(self, api):
        rejected(
            post(api, {"a": {"type": "delay", "body": {"seconds": 1, "minutes": 2}}}),
            "tasks.a.body.minutes", "Unknown field", "delay",
        )

    def test_unknown_task_key(self, api):
        rejected(post(api, {"a": {"type": "delay", "body": {"seconds": 1}, "priority": 5}}),
                 "tasks.a.priority", "Unknown key")

    def test_wrong_literal_type(self, api):
        rejected(post(api, {"a": {"type": "delay", "body": {"seconds": "ten"}}}),
                 "tasks.a.body.seconds", "number", "str")

    def test_literal_out_of_range(self, api):
        rejected(post(api, {"t": {"type": "send_tweet", "integration": None, "body": {"text": "x" * 281}}}),
                 "tasks.t.body.text", "280")

    def test_literal_not_a_choice(self, api):
        rejected(post(api, {"f": {"type": "http_request", "body": {"method": "FETCH", "url": None}}}),
                 "tasks.f.body.method", "GET")

    def test_template_into_a_non_string_field(self, api):
        tasks = {
            "a": {"type": "transform", "body": {"data": None, "expression": "@"}},
            "b": {"type": "delay", "body": {"seconds": {"$template": "{{ a }}"}},
                  "execute_after": {"a": ["completed"]}},
        }
        rejected(post(api, tasks), "tasks.b.body.seconds", "$template")

    def test_bad_task_name(self, api):
        rejected(post(api, {"no-dashes": {"type": "delay", "body": {"seconds": 1}}}),
                 "tasks.no-dashes", "task name")

    def test_retries_out_of_range(self, api, settings):
        settings.JUNCTION_MAX_RETRIES = 3
        rejected(post(api, {"a": {"type": "delay", "body": {"seconds": 1}, "retries": 4}}),
                 "tasks.a.retries", "3")

    def test_timeout_must_be_positive(self, api):
        rejected(post(api, {"a": {"type": "delay", "body": {"seconds": 1}, "timeout": 0}}),
                 "tasks.a.timeout", "seconds")

    def test_empty_tasks(self, api):
        rejected(post(api, {}), "tasks", "non-empty")

    def test_tasks_not_an_object(self, api):
        rejected(post(api, ["a"]), "tasks", "object")


@pytest.mark.django_db
class TestIntegrationRules:
    def test_missing_integration(self, api):
        rejected(post(api, {"t": {"type": "send_tweet", "body": {"text": "hi"}}}),
                 "tasks.t.integration", "twitter")

    def test_unknown_integration(self, api):
        rejected(post(api, {"t": {"type": "send_tweet", "integration": "00000000-0000-0000-0000-000000000000",
                                  "body": {"text": "hi"}}}),
                 "tasks.t.integration", "Unknown integration")

    def test_integration_that_is_not_a_uuid(self, api):
        rejected(post(api, {"t": {"type": "send_tweet", "integration": "my-twitter", "body": {"text": "hi"}}}),
                 "tasks.t.integration", "Unknown integration", "my-twitter")

    def test_integration_of_another_provider(self, api, user):
        smtp = make_integration(user, provider="smtp")
        rejected(post(api, {"t": {"type": "send_tweet", "integration": str(smtp.id), "body": {"text": "hi"}}}),
                 "tasks.t.integration", "smtp", "twitter")

    def test_integration_of_another_user(self, api, other_user):
        theirs = make_integration(other_user)
        messages = rejected(
            post(api, {"t": {"type": "send_tweet", "integration": str(theirs.id), "body": {"text": "hi"}}}),
            "tasks.t.integration", "Unknown integration",
        )
        assert other_user.username not in " ".join(messages)

    def test_integration_on_a_type_without_provider(self, api, user):
        mine = make_integration(user)
        rejected(post(api, {"a": {"type": "delay", "integration": str(mine.id), "body": {"seconds": 1}}}),
                 "tasks.a.integration", "takes no integration")

    def test_own_integration_of_the_right_provider_is_accepted(self, api, user):
        mine = make_integration(user)
        response = post(api, {"t": {"type": "send_tweet", "integration": str(mine.id), "body": {"text": "hi"}}})
        assert response.status_code == 201, response.content


@pytest.mark.django_db
class TestGraphRules:
    def test_execute_after_unknown_task(self, api):
        tasks = {"a": {"type": "delay", "body": {"seconds": 1}, "execute_after": {"ghost": ["completed"]}}}
        rejected(post(api, tasks), "tasks.a.execute_after.ghost", "ghost")

    def test_execute_after_bad_status(self, api):
        tasks = {
            "a": {"type": "delay", "body": {"seconds": 1}},
            "b": {"type": "delay", "body": {"seconds": 1}, "execute_after": {"a": ["done"]}},
        }
        rejected(post(api, tasks), "tasks.b.execute_after.a", "completed", "failed")

    def test_execute_after_itself(self, api):
        tasks = {"a": {"type": "delay", "body": {"seconds": 1}, "execute_after": {"a": ["completed"]}}}
        rejected(post(api, tasks), "tasks.a.execute_after.a", "itself")

    def test_cycle_is_listed(self, api):
        tasks = {
            "a": {"type": "delay", "body": {"seconds": 1}, "execute_after": {"c": ["completed"]}},
            "b": {"type": "delay", "body": {"seconds": 1}, "execute_after": {"a": ["completed"]}},
            "c": {"type": "delay", "body": {"seconds": 1}, "execute_after": {"b": ["completed"]}},
            "d": {"type": "delay", "body": {"seconds": 1}},
        }
        (message,) = rejected(post(api, tasks), "tasks", "cycle")
        assert "a -> b -> c -> a" in message
        assert "d" not in message.split(":", 1)[1]

    def test_ref_to_a_task_that_is_not_an_ancestor(self, api):
        tasks = {
            "a": {"type": "transform", "body": {"data": None, "expression": "@"}},
            "b": {"type": "transform", "body": {"data": {"$ref": "a.items"}, "expression": "@"}},
        }
        rejected(post(api, tasks), "tasks.b.body.data", "'a'", "not an ancestor")

    def test_ref_to_a_later_task(self, api):
        tasks = {
            "a": {"type": "transform", "body": {"data": {"$ref": "b"}, "expression": "@"}},
            "b": {"type": "transform", "body": {"data": None, "expression": "@"},
                  "execute_after": {"a": ["completed"]}},
        }
        rejected(post(api, tasks), "tasks.a.body.data", "'b'", "not an ancestor")

    def test_ref_to_an_unknown_task(self, api):
        tasks = {"a": {"type": "transform", "body": {"data": {"$ref": "nobody.x"}, "expression": "@"}}}
        rejected(post(api, tasks), "tasks.a.body.data", "nobody")

    def test_ref_in_a_template_to_a_non_ancestor(self, api, user):
        mine = make_integration(user)
        tasks = {
            "a": {"type": "transform", "body": {"data": None, "expression": "@"}},
            "t": {"type": "send_tweet", "integration": str(mine.id),
                  "body": {"text": {"$template": "got {{ a.id }}"}}},
        }
        rejected(post(api, tasks), "tasks.t.body.text", "not an ancestor")

    def test_ref_to_an_indirect_ancestor_is_accepted(self, api):
        tasks = {
            "a": {"type": "transform", "body": {"data": None, "expression": "@"}},
            "b": {"type": "delay", "body": {"seconds": 0}, "execute_after": {"a": ["completed"]}},
            "c": {"type": "transform", "body": {"data": {"$ref": "a.error"}, "expression": "@"},
                  "execute_after": {"b": ["completed", "failed"]}},
        }
        assert post(api, tasks).status_code == 201


@pytest.mark.django_db
class TestExpressionRules:
    def test_unparseable_transform_expression(self, api):
        rejected(post(api, {"a": {"type": "transform", "body": {"data": None, "expression": "items[[0"}}}),
                 "tasks.a.body.expression", "JMESPath")

    def test_unparseable_condition_expression(self, api):
        rejected(post(api, {"a": {"type": "condition", "body": {"data": {}, "expression": "a ==="}}}),
                 "tasks.a.body.expression", "JMESPath")

    def test_unparseable_ref_path(self, api):
        tasks = {
            "a": {"type": "transform", "body": {"data": None, "expression": "@"}},
            "b": {"type": "transform", "body": {"data": {"$ref": "a.items[[0"}, "expression": "@"},
                  "execute_after": {"a": ["completed"]}},
        }
        rejected(post(api, tasks), "tasks.b.body.data", "invalid path", "a.items[[0")

    def test_unparseable_ref_in_a_template(self, api, user):
        mine = make_integration(user)
        tasks = {
            "a": {"type": "transform", "body": {"data": None, "expression": "@"}},
            "t": {"type": "send_tweet", "integration": str(mine.id),
                  "body": {"text": {"$template": "id {{ a.[[ }}"}},
                  "execute_after": {"a": ["completed"]}},
        }
        rejected(post(api, tasks), "tasks.t.body.text", "invalid path")

    def test_ref_object_with_extra_keys(self, api):
        tasks = {
            "a": {"type": "transform", "body": {"data": None, "expression": "@"}},
            "b": {"type": "transform", "body": {"data": {"$ref": "a", "x": 1}, "expression": "@"},
                  "execute_after": {"a": ["completed"]}},
        }
        rejected(post(api, tasks), "tasks.b.body.data", "no other keys")


@pytest.mark.django_db
class TestLimits:
    def test_more_tasks_than_the_maximum(self, api, settings):
        settings.JUNCTION_MAX_TASKS = 3
        tasks = {f"t{i}": {"type": "delay", "body": {"seconds": 0}} for i in range(4)}
        rejected(post(api, tasks), "tasks", "Too many tasks", "4", "3")

    def test_exactly_the_maximum_is_accepted(self, api, settings):
        settings.JUNCTION_MAX_TASKS = 3
        tasks = {f"t{i}": {"type": "delay", "body": {"seconds": 0}} for i in range(3)}
        assert post(api, tasks).status_code == 201


@pytest.mark.django_db
def test_every_problem_is_reported_at_once(api):
    tasks = {
        "a": {"type": "teleport"},
        "b": {"type": "delay", "body": {"seconds": "x", "extra": 1}},
        "c": {"type": "delay", "body": {"seconds": 1}, "execute_after": {"zzz": ["completed"]}},
    }
    body = assert_error(post(api, tasks), 400, "validation_error")
    assert {"tasks.a.type", "tasks.b.body.seconds", "tasks.b.body.extra", "tasks.c.execute_after.zzz"} <= set(
        body["details"])
    assert "more" in body["message"]


@pytest.mark.django_db
def test_put_validates_like_post(api, user):
    from tests.conftest import make_interaction

    interaction = make_interaction(user)
    response = api.put(f"/api/interactions/{interaction.id}/",
                       {"name": interaction.name, "tasks": {"a": {"type": "teleport"}}}, format="json")
    body = assert_error(response, 400, "validation_error")
    assert "tasks.a.type" in body["details"]
    interaction.refresh_from_db()
    assert interaction.current_version.number == 1
