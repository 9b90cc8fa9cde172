"""Limits on what callers send and what tasks make (issue 9, items 1 and 2; docs/limits.md)."""
from __future__ import annotations

import socket
import time
from datetime import timedelta

import pytest
from django.conf import settings
from django.test import override_settings
from django.utils import timezone

from interactions import selectors
from interactions.models import Interaction, Session, TaskRun
from interactions.services import interaction_create
from tasks_catalog.base import TaskFailed
from tasks_catalog.registry import find_task_type
from tests.accounts.test_auth import assert_error
from tests.conftest import SIMPLE_TASKS, make_interaction

pytestmark = pytest.mark.django_db


def create(api, tasks, **extra):
    return api.post("/api/interactions/", {"name": "limits", "tasks": tasks, **extra}, format="json")


def trial(api, type_key, body, **extra):
    response = api.post(f"/api/task-types/{type_key}/test/", {"body": body, **extra}, format="json")
    assert response.status_code == 200, response.content[:300]
    return response


# --- deadline_seconds --------------------------------------------------------------------------

@pytest.mark.parametrize("value", [2**63, 10**12, 2**31, settings.JUNCTION_MAX_SESSION_DEADLINE + 1, 0, -1, 1e308])
def test_deadline_seconds_out_of_range_is_400_on_create(api, value):
    body = assert_error(create(api, SIMPLE_TASKS, deadline_seconds=value), 400, "validation_error")
    assert "deadline_seconds" in body["details"]
    assert not Interaction.objects.exists()


@pytest.mark.parametrize("value", [2**63, 10**12, settings.JUNCTION_MAX_SESSION_DEADLINE + 1])
def test_deadline_seconds_out_of_range_is_400_on_patch(api, user, value):
    interaction = make_interaction(user)
    response = api.patch(f"/api/interactions/{interaction.id}/", {"deadline_seconds": value}, format="json")
    assert "deadline_seconds" in assert_error(response, 400, "validation_error")["details"]


def test_deadline_seconds_at_the_maximum_is_accepted(api):
    response = create(api, SIMPLE_TASKS, deadline_seconds=settings.JUNCTION_MAX_SESSION_DEADLINE)
    assert response.status_code == 201, response.content


def test_a_stored_deadline_past_the_maximum_is_clamped_when_running(api, user):
    interaction = make_interaction(user, active=True)
    Interaction.objects.filter(pk=interaction.pk).update(deadline_seconds=2**31 - 1)  # written before the bound
    response = api.post(f"/api/interactions/{interaction.id}/run/", {"shape": {"data": {"items": [1]}}}, format="json")
    assert response.status_code == 202, response.content
    session = Session.objects.get(pk=response.json()["id"])
    assert session.deadline_at <= timezone.now() + timedelta(seconds=settings.JUNCTION_MAX_SESSION_DEADLINE)


# --- response headers --------------------------------------------------------------------------

def reply_tasks(headers=None, **body):
    return {"reply": {"type": "response", "body": {"status_code": 200, "body": {"ok": True},
                                                   "headers": headers or {}, **body}}}


BAD_HEADERS = [
    {"X-Split": "a\r\nSet-Cookie: stolen=1"}, {"X-Split": "a\nb"}, {"X-Split": "a\rb"}, {"X-Nul": "a\x00b"},
    {"Connection": "close"}, {"Transfer-Encoding": "chunked"}, {"Content-Length": "0"},
    {"content-length": "5"}, {"Keep-Alive": "timeout=5"}, {"Upgrade": "websocket"}, {"Trailer": "X"},
    {"TE": "trailers"}, {"Proxy-Authenticate": "Basic"}, {"Proxy-Connection": "keep-alive"},
    {"Bad Name": "x"}, {"X:Colon": "x"}, {"X-Crlf\r\n": "x"}, {"": "x"}, {"X-Number": 1},
    {"X-List": ["a"]}, {"X-Emoji": "\U0001F600"}, {"X-Long": "x" * 10_000},
]


@pytest.mark.parametrize("headers", BAD_HEADERS, ids=[repr(h)[:40] for h in BAD_HEADERS])
def test_bad_response_headers_are_refused_at_save_naming_task_and_field(api, headers):
    body = assert_error(create(api, reply_tasks(headers)), 400, "validation_error")
    assert "tasks.reply.body.headers" in body["details"], body


@pytest.mark.parametrize("headers", BAD_HEADERS, ids=[repr(h)[:40] for h in BAD_HEADERS])
def test_bad_response_headers_are_refused_by_the_test_endpoint(api, headers):
    response = api.post("/api/task-types/response/test/", {"body": {"headers": headers}}, format="json")
    assert "body.headers" in assert_error(response, 400, "validation_error")["details"]


@pytest.mark.parametrize("headers", BAD_HEADERS[:14], ids=[repr(h)[:40] for h in BAD_HEADERS[:14]])
def test_bad_response_headers_from_a_reference_fail_the_task_when_it_runs(headers):
    from interactions.executor import run_with_body

    with pytest.raises(TaskFailed, match="headers"):
        run_with_body(task_type=find_task_type("response"), integration_id=None, user_id=None, timeout=1,
                      body={"status_code": 200, "body": None, "headers": headers})


def test_header_values_from_references_are_accepted_at_save(api):
    tasks = {"make": {"type": "transform", "body": {"data": {"v": "x"}, "expression": "v"}},
             **reply_tasks({"X-Value": {"$ref": "make"}})}
    tasks["reply"]["execute_after"] = {"make": ["completed"]}
    assert create(api, tasks).status_code == 201


def test_a_reference_cannot_name_a_forbidden_header(api):
    tasks = {"make": {"type": "transform", "body": {"data": {"v": "x"}, "expression": "v"}},
             **reply_tasks({"Content-Length": {"$ref": "make"}})}
    tasks["reply"]["execute_after"] = {"make": ["completed"]}
    assert "tasks.reply.body.headers" in assert_error(create(api, tasks), 400)["details"]


def test_good_headers_are_accepted(api):
    assert create(api, reply_tasks({"X-Request-Id": "abc", "Cache-Control": "no-store",
                                    "Location": "/next", "X-Latin": "caf\u00e9"})).status_code == 201


@pytest.mark.parametrize("status_code", [100, 101, 199])
def test_informational_statuses_are_refused(api, status_code):
    body = assert_error(create(api, reply_tasks(status_code=status_code)), 400)
    assert "tasks.reply.body.status_code" in body["details"]


@pytest.mark.parametrize("status_code", [204, 304])
def test_a_bodyless_status_with_a_body_fails_the_task(api, status_code):
    result = trial(api, "response", {"status_code": status_code, "body": {"a": 1}}).json()
    assert result["status"] == "failed" and "no body" in result["error"]
    assert trial(api, "response", {"status_code": status_code}).json()["status"] == "completed"


def test_a_stored_reply_sends_only_sendable_headers(user):
    interaction = make_interaction(user, tasks=reply_tasks({"X-Ok": "1"}), active=True)
    session = Session.objects.create(user=user, interaction=interaction, version=interaction.current_version,
                                     status=Session.Status.COMPLETED, input={})
    TaskRun.objects.create(session=session, name="reply", status=TaskRun.Status.COMPLETED, output={
        "status_code": 200, "body": None,
        "headers": {"X-Ok": "1", "Transfer-Encoding": "chunked", "X-Bad": "a\r\nb"},
    })
    assert selectors.session_reply(session)["headers"] == {"X-Ok": "1"}


# --- nesting, expressions and templates in definitions ---------------------------------------

def nested(levels: int):
    value: dict = {"leaf": 1}
    for _ in range(levels):
        value = {"a": value}
    return value


@pytest.mark.parametrize("levels", [settings.JUNCTION_MAX_JSON_DEPTH + 1, 900, 5000])
def test_a_definition_nested_too_deeply_is_refused_by_the_service(user, levels):
    # The API's parser refuses such a body before; the service refuses it from any caller.
    from config.errors import InvalidInput

    tasks = {"t": {"type": "transform", "body": {"data": nested(levels), "expression": "@"}}}
    with pytest.raises(InvalidInput) as raised:
        interaction_create(user=user, name="deep", tasks=tasks)
    assert "tasks.t.body.data" in raised.value.details or "tasks" in raised.value.details


def test_an_expression_longer_than_the_limit_is_refused(api):
    expression = "a" * (settings.JUNCTION_MAX_EXPRESSION_LENGTH + 1)
    tasks = {"t": {"type": "transform", "body": {"data": {}, "expression": expression}}}
    assert "tasks.t.body.expression" in assert_error(create(api, tasks), 400)["details"]


@pytest.mark.parametrize("value", [
    {"$ref": "a." + "b" * settings.JUNCTION_MAX_EXPRESSION_LENGTH},
    {"$template": "x" * (settings.JUNCTION_MAX_TEMPLATE_LENGTH + 1)},
    {"$template": "{{ a }}" * (settings.JUNCTION_MAX_TEMPLATE_PLACEHOLDERS + 1)},
    {"$template": "{{ a." + "b" * settings.JUNCTION_MAX_EXPRESSION_LENGTH + " }}"},
    {"$ref": "a." + "(" * 3000 + "@" + ")" * 3000},
])
def test_references_and_templates_past_their_limits_are_refused(api, value):
    tasks = {"a": {"type": "transform", "body": {"data": {}, "expression": "@"}},
             "b": {"type": "fail", "body": {"message": value}, "execute_after": {"a": ["completed"]}}}
    assert "tasks.b.body.message" in assert_error(create(api, tasks), 400)["details"]


# --- the test endpoint: a run's output limit and the task's own timeout ----------------------

DOUBLING = "|".join(["[@,@]"] * 14)


@pytest.mark.parametrize("type_key", ["transform", "condition"])
def test_doubling_through_the_test_endpoint_stops_at_the_output_limit(api, type_key):
    expression = DOUBLING if type_key == "transform" else f"{{v: {DOUBLING}}}"
    response = trial(api, type_key, {"data": "x" * 1000, "expression": expression})
    assert len(response.content) < 10_000  # not the 16 MB the doubling would encode to
    result = response.json()
    assert result["status"] == "failed" and "output too large" in result["error"], result


@pytest.mark.parametrize("expression", [
    "|".join(["join('', [@,@])"] * 30), "|".join(["[@,@][]"] * 40), f"to_string({DOUBLING}|{DOUBLING})",
])
def test_amplifying_expressions_fail_the_trial_quickly(api, expression):
    started = time.monotonic()
    result = trial(api, "transform", {"data": "x" * 1000, "expression": expression}).json()
    assert result["status"] == "failed" and "expression failed" in result["error"], result
    assert time.monotonic() - started < 10


def test_the_test_endpoint_honours_the_tasks_timeout(api):
    started = time.monotonic()
    result = trial(api, "delay", {"seconds": 5}, timeout=0.3).json()
    assert (result["status"], result["error"]) == ("failed", "timed out after 0.3 s")
    assert time.monotonic() - started < 3


def test_the_test_endpoint_refuses_a_timeout_past_the_maximum(api):
    response = api.post("/api/task-types/delay/test/",
                        {"body": {"seconds": 1}, "timeout": settings.JUNCTION_MAX_TASK_TIMEOUT + 1}, format="json")
    assert "timeout" in assert_error(response, 400, "validation_error")["details"]


# --- deleting an interaction that has sessions -------------------------------------------------

def test_deleting_an_interaction_deletes_its_sessions_and_cancels_the_active_ones(api, user, monkeypatch):
    from config.celery import app

    revoked: list = []
    monkeypatch.setattr(app.control, "revoke", lambda ids, **kw: revoked.extend(ids))
    interaction = make_interaction(user, active=True)
    version = interaction.current_version
    done = Session.objects.create(user=user, interaction=interaction, version=version,
                                  status=Session.Status.COMPLETED, input={})
    running = Session.objects.create(user=user, interaction=interaction, version=version,
                                     status=Session.Status.RUNNING, input={})
    TaskRun.objects.create(session=running, name="shape", status=TaskRun.Status.RUNNING)
    TaskRun.objects.create(session=running, name="check")

    response = api.delete(f"/api/interactions/{interaction.id}/")

    assert response.status_code == 204, response.content
    assert not Session.objects.filter(pk__in=[done.pk, running.pk]).exists()
    assert not TaskRun.objects.filter(session_id=running.pk).exists()
    assert revoked == [f"{running.pk}.shape"]  # its running task was asked to stop
    assert_error(api.get(f"/api/sessions/{running.pk}/"), 404, "not_found")


def test_deleting_a_user_with_sessions_works(user):
    interaction = make_interaction(user, active=True)
    Session.objects.create(user=user, interaction=interaction, version=interaction.current_version, input={})
    user.delete()
    assert not Interaction.objects.filter(pk=interaction.pk).exists()


# --- Redis down --------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def cache_down():
    location = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    caches = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": location,
                          "OPTIONS": {"socket_timeout": 0.5, "socket_connect_timeout": 0.5}}}
    with override_settings(CACHES=caches, JUNCTION_RATE_PLANS={"default": "5/min"}):
        yield


def test_run_while_the_cache_is_down_is_accepted_durably(api, user, cache_down):
    interaction = make_interaction(user, active=True)
    response = api.post(f"/api/interactions/{interaction.id}/run/", {"shape": {"data": {"items": [1]}}}, format="json")
    assert response.status_code == 202, response.content
    assert Session.objects.filter(pk=response.json()["id"]).exists()


def test_metrics_answer_while_the_cache_is_down(client, cache_down):
    assert client.get("/metrics").status_code == 200


def test_lowering_a_limit_never_breaks_a_stored_version(api, user, settings):
    tasks = {f"t{i}": {"type": "transform", "body": {"data": {"a": 1}, "expression": "a"}} for i in range(3)}
    interaction = make_interaction(user, tasks=tasks, active=True)  # a new version: not compiled yet
    settings.JUNCTION_MAX_TASKS = 2
    settings.JUNCTION_MAX_EXPRESSION_LENGTH = 16
    assert api.get(f"/api/interactions/{interaction.id}/plan/").status_code == 200
    assert api.post(f"/api/interactions/{interaction.id}/run/", {}, format="json").status_code in (200, 202)
    # …while a new definition is held to the new limit.
    assert "tasks" in assert_error(create(api, tasks), 400)["details"]



def test_a_run_whose_transform_doubles_past_any_memory_fails_the_task(api, user, django_capture_on_commit_callbacks):
    doubling = "|".join(["[@,@]"] * 40)  # 2**40 KB when encoded
    interaction = make_interaction(user, active=True, tasks={
        "grow": {"type": "transform", "body": {"data": "x" * 1000, "expression": doubling}},
        "say": {"type": "response", "body": {"body": {"$ref": "grow"}}, "execute_after": {"grow": ["completed"]}},
    })
    started = time.monotonic()
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(f"/api/interactions/{interaction.id}/run/", {}, format="json", HTTP_PREFER="wait=5")
    assert time.monotonic() - started < 10
    assert response.status_code in (200, 202), response.content[:300]
    grow = TaskRun.objects.get(session_id=response["Location"].rstrip("/").rsplit("/", 1)[-1], name="grow")
    assert grow.status == "failed" and grow.error.startswith("output too large"), grow.error
