"""The conventions of docs/api.md: trailing slashes, lists, timestamps, the endpoint's example body."""
from __future__ import annotations

import re

import pytest

from interactions.models import Session
from tasks_catalog.registry import task_types
from tests.conftest import make_integration, make_interaction, smtp_integration
from tests.interactions.test_events_stream import parse

TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")
PURE = {"shape": {"type": "transform", "body": {"data": None, "expression": "@"}}}


# --- trailing slashes ------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/api/interactions", "/api/interactions/"])
def test_a_post_with_or_without_the_trailing_slash_is_answered(api, path):
    response = api.post(path, {"name": f"n{len(path)}", "tasks": PURE}, format="json")
    assert response.status_code == 201, response.content


@pytest.mark.django_db
def test_every_route_answers_without_its_trailing_slash(api, user):
    interaction = make_interaction(user, tasks=PURE, active=True)
    base = f"/api/interactions/{interaction.id}"
    assert api.get(base).json()["id"] == str(interaction.id)
    assert api.get(f"{base}/endpoint").status_code == 200
    assert api.get("/api/auth/me").json()["username"] == user.username
    assert api.get("/api/task-types/transform").status_code == 200
    ran = api.post(f"{base}/run", {"shape": {"data": 1}}, format="json")
    assert ran.status_code == 202, ran.content
    assert ran.headers["Location"] == f"/api/sessions/{ran.json()['id']}/"  # links keep the canonical form


@pytest.mark.django_db
def test_a_login_without_the_trailing_slash_is_not_redirected(anon, user):
    from tests.conftest import PASSWORD

    response = anon.post("/api/auth/login", {"username": user.username, "password": PASSWORD}, format="json")
    assert response.status_code == 200
    assert "access" in response.json()


@pytest.mark.django_db
def test_every_route_of_the_document_resolves_without_its_trailing_slash(anon):
    from django.urls import resolve

    paths = anon.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()["paths"]
    values = {"slug": "shop", "type": "transform"}
    for path in paths:
        concrete = re.sub(r"\{(\w+)\}", lambda m: values.get(m.group(1), "8c1f3b1e-3a55-4b8e-9d1e-1a2b3c4d5e6f"), path)
        assert concrete.endswith("/"), path
        assert resolve(concrete[:-1]).func == resolve(concrete).func, path


@pytest.mark.django_db
def test_an_end_users_login_without_the_trailing_slash_is_not_redirected(anon, user):
    from tests.conftest import PASSWORD, make_app, make_end_user

    end_user = make_end_user(make_app(user, slug="shop"))
    response = anon.post("/api/apps/shop/auth/login", {"email": end_user.email, "password": PASSWORD}, format="json")
    assert response.status_code == 200, response.content
    assert "access" in response.json()


# --- lists: ordering, search, page_size -----------------------------------------------------


@pytest.fixture
def three(user):
    return [make_interaction(user, tasks=PURE, name=name) for name in ("bravo", "alpha", "charlie")]


def names(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [item["name"] for item in response.json()["results"]]


@pytest.mark.django_db
def test_lists_are_ordered_by_the_ordering_parameter(api, three):
    assert names(api.get("/api/interactions/?ordering=name")) == ["alpha", "bravo", "charlie"]
    assert names(api.get("/api/interactions/?ordering=-name")) == ["charlie", "bravo", "alpha"]
    # The default: newest first.
    assert names(api.get("/api/interactions/")) == ["charlie", "alpha", "bravo"]


@pytest.mark.django_db
def test_an_unknown_ordering_field_is_400_naming_the_parameter(api, three):
    response = api.get("/api/interactions/?ordering=user")
    assert response.status_code == 400
    assert response.json()["code"] == "validation_error"
    assert list(response.json()["details"]) == ["ordering"]


@pytest.mark.django_db
def test_lists_are_searched_by_the_search_parameter(api, three):
    assert names(api.get("/api/interactions/?search=LPH")) == ["alpha"]
    assert names(api.get("/api/interactions/?search=nothing-like-it")) == []


@pytest.mark.django_db
def test_page_size_sets_the_page_and_has_a_maximum(api, three, settings):
    page = api.get("/api/interactions/?page_size=2&ordering=name").json()
    assert [item["name"] for item in page["results"]] == ["alpha", "bravo"]
    assert page["count"] == 3 and "page=2" in page["next"] and "page_size=2" in page["next"]
    for bad in (0, -1, "two", settings.JUNCTION_MAX_PAGE_SIZE + 1):
        response = api.get(f"/api/interactions/?page_size={bad}")
        assert response.status_code == 400, bad
        assert list(response.json()["details"]) == ["page_size"]


@pytest.mark.django_db
@pytest.mark.parametrize("page", ["", "0", "-1", "last", "one", "²", "١"])
def test_a_page_that_is_not_a_number_from_1_is_400(api, three, page):
    response = api.get(f"/api/interactions/?page={page}")
    assert response.status_code == 400
    assert list(response.json()["details"]) == ["page"]


@pytest.mark.django_db
def test_a_page_past_the_last_is_404(api, three):
    assert api.get("/api/interactions/?page=2").json()["code"] == "not_found"


@pytest.mark.django_db
def test_every_paginated_list_takes_ordering_search_and_page_size(api, user):
    interaction = make_interaction(user, tasks=PURE, active=True)
    api.post(f"/api/interactions/{interaction.id}/run/", {"shape": {"data": 1}}, format="json")
    make_integration(user, "twitter", name="tw")
    api.post("/api/auth/api-keys/", {"name": "k"}, format="json")
    for path, field in [
        ("/api/interactions/", "name"), ("/api/sessions/", "created_at"), ("/api/integrations/", "name"),
        ("/api/auth/api-keys/", "name"), (f"/api/interactions/{interaction.id}/versions/", "version"),
    ]:
        response = api.get(f"{path}?ordering=-{field}&search=&page_size=1")
        assert response.status_code == 200, (path, response.content)
        assert len(response.json()["results"]) == 1, path
        assert api.get(f"{path}?ordering=no_such_field").status_code == 400, path


@pytest.mark.django_db
@pytest.mark.parametrize("query", ["is_active=yes", "is_active=", "is_active=1"])
def test_a_filter_value_that_cannot_be_read_is_400_not_ignored(api, three, query):
    response = api.get(f"/api/interactions/?{query}")
    assert response.status_code == 400
    assert list(response.json()["details"]) == ["is_active"]


@pytest.mark.django_db
@pytest.mark.parametrize("query", [
    "interaction=0123456789abcdef0123456789abcdef",  # a UUID without dashes
    "created_after=2026-01-01",  # not an RFC 3339 date-time
    "created_after=2026-01-01%2010:00:00",
])
def test_ids_and_times_in_filters_take_the_documented_forms_only(api, query):
    response = api.get(f"/api/sessions/?{query}")
    assert response.status_code == 400, response.content


# --- one timestamp format -------------------------------------------------------------------


@pytest.mark.django_db
def test_every_timestamp_is_iso_8601_utc_with_microseconds_and_z(api, user):
    interaction = make_interaction(user, tasks=PURE, active=True)
    found = api.get(f"/api/interactions/{interaction.id}/").json()
    assert TIMESTAMP.match(found["created_at"]) and TIMESTAMP.match(found["updated_at"]), found
    version = api.get(f"/api/interactions/{interaction.id}/versions/").json()["results"][0]
    assert TIMESTAMP.match(version["created_at"]), version
    session = api.post(f"/api/interactions/{interaction.id}/run/", {"shape": {"data": 1}}, format="json").json()
    read = api.get(f"/api/sessions/{session['id']}/").json()
    for data in (session, read):
        for key in ("created_at", "started_at", "finished_at"):
            assert TIMESTAMP.match(data[key]), (key, data[key])
        for key in ("started_at", "finished_at"):
            assert TIMESTAMP.match(data["tasks"]["shape"][key]), data["tasks"]
    key = api.post("/api/auth/api-keys/", {"name": "k"}, format="json").json()
    assert TIMESTAMP.match(key["created_at"]), key


@pytest.mark.django_db
def test_event_stream_timestamps_have_the_same_format(api, user):
    interaction = make_interaction(user, tasks=PURE, active=True)
    session = api.post(f"/api/interactions/{interaction.id}/run/", {"shape": {"data": 1}}, format="json").json()
    response = api.get(f"/api/sessions/{session['id']}/events/", HTTP_ACCEPT="text/event-stream")
    events = [event for event in parse(b"".join(response.streaming_content).decode()) if "data" in event]
    assert [event["event"] for event in events] == ["task", "session"]
    assert TIMESTAMP.match(events[0]["data"]["finished_at"])
    assert TIMESTAMP.match(events[1]["data"]["created_at"]) and TIMESTAMP.match(events[1]["data"]["finished_at"])


# --- the endpoint view's example body runs as shown -----------------------------------------


def _all_blank(task_type) -> dict:
    return {spec.name: None for spec in task_type.fields}


@pytest.mark.django_db
@pytest.mark.parametrize("key", sorted(t.key for t in task_types if t.fields))
def test_the_endpoint_example_body_runs_as_shown(api, user, smtp_server, key):
    """Every field of the type left blank: the example built from the field specs is accepted."""
    task_type = task_types.get(key)
    task = {"type": key, "body": _all_blank(task_type)}
    if task_type.provider == "twitter":
        task["integration"] = str(make_integration(user, "twitter").id)
    elif task_type.provider == "smtp":
        task["integration"] = str(smtp_integration(user, smtp_server).id)
    interaction = make_interaction(user, tasks={"only": task}, active=True)
    endpoint = api.get(f"/api/interactions/{interaction.id}/endpoint/").json()
    assert set(endpoint["body"]["only"]) == {spec.name for spec in task_type.fields}
    response = api.post(endpoint["url"], endpoint["body"], format="json")
    assert response.status_code in (200, 202), response.content
    assert Session.objects.get(pk=response.json()["id"]).input == endpoint["body"]


@pytest.mark.django_db
@pytest.mark.parametrize("wait", ["", "abc", "inf", "nan", "١", " 1", "1_0", "1\n"])
def test_a_wait_that_is_not_a_number_is_400_and_runs_nothing(api, user, wait):
    from urllib.parse import quote

    interaction = make_interaction(user, tasks=PURE, active=True)
    response = api.post(f"/api/interactions/{interaction.id}/run/?wait={quote(wait)}", {"shape": {"data": 1}},
                        format="json")
    assert response.status_code == 400
    assert list(response.json()["details"]) == ["wait"]
    assert Session.objects.count() == 0


@pytest.mark.django_db
def test_versions_are_searched_by_their_definition(api, user):
    interaction = make_interaction(user, tasks=PURE)
    path = f"/api/interactions/{interaction.id}/versions/"
    assert [v["version"] for v in api.get(f"{path}?search=transform").json()["results"]] == [1]
    assert api.get(f"{path}?search=http_request").json()["results"] == []


# --- apps, end users and provider apps follow the same conventions ----------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("query", ["is_active=null", "is_active=1", "is_active=True"])
def test_an_end_users_filter_that_cannot_be_read_is_400_naming_it(api, user, query):
    from tests.conftest import make_app

    app = make_app(user)
    response = api.get(f"/api/apps/{app.id}/end-users/?{query}")
    assert response.status_code == 400, response.content
    assert list(response.json()["details"]) == ["is_active"]


@pytest.mark.django_db
def test_integrations_filtered_by_an_unknown_provider_app_are_none(api, user):
    make_integration(user, "twitter")
    response = api.get("/api/integrations/?provider_app=8c1f3b1e-3a55-4b8e-9d1e-1a2b3c4d5e6f")
    assert response.status_code == 200, response.content
    assert response.json()["results"] == []
    assert list(api.get("/api/integrations/?provider_app=8c1f3b1e3a554b8e9d1e1a2b3c4d5e6f").json()["details"]) == [
        "provider_app"]


@pytest.mark.django_db
@pytest.mark.parametrize(("path", "body", "field"), [
    ("/api/apps/", {"name": "A", "slug": "a", "groups": [0]}, "groups"),
    ("/api/apps/", {"name": 5, "slug": "a"}, "name"),
    ("/api/provider-apps/", {"name": "P", "provider": "twitter", "credentials": {}, "callback_url": 5}, "callback_url"),
])
def test_apps_and_provider_apps_take_their_json_types_only(api, path, body, field):
    response = api.post(path, body, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()["details"]


@pytest.mark.django_db
def test_a_provider_app_of_a_provider_without_oauth_is_400_naming_provider(api):
    response = api.post("/api/provider-apps/", {"name": "P", "provider": "smtp", "credentials": {}}, format="json")
    assert response.status_code == 400, response.content
    assert list(response.json()["details"]) == ["provider"]
