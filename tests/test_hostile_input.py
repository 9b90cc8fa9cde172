"""Nothing a caller sends produces a 5xx (issue 9, item 1): every API route, hostile bodies.

Routes come from the URL resolver, so a new route is fuzzed without being listed here. Each
body is sent to every route that takes one: nesting past Python's recursion limit and just
past JUNCTION_MAX_JSON_DEPTH, huge and odd numbers, wrong types, CR/LF, over-long strings, and
(with hypothesis) arbitrary JSON in each field of a valid body. Every answer is below 500 and
every 4xx is in the one error shape.
"""
from __future__ import annotations

import json
import re

import pytest
from django.conf import settings
from django.urls import get_resolver
from hypothesis import HealthCheck, given, settings as hypothesis_settings, strategies as st

from accounts import app_services
from accounts import services as account_services
from integrations import services as integration_services
from interactions.models import Session
from tests.conftest import SIMPLE_TASKS, TWITTER_APP_CREDENTIALS, make_integration, make_interaction

KINDS = {"api-keys": "api_key", "integrations": "integration", "interactions": "interaction",
         "sessions": "session", "apps": "app", "end-users": "end_user", "invitations": "invitation",
         "provider-apps": "provider_app"}
# A URL parameter, as a router's regex (`(?P<pk>…)`) or a `path()` converter (`<uuid:app_pk>`).
PARAMETER = re.compile(r"\(\?P<(\w+)>[^)]*\)|<(?:\w+:)?(\w+)>")


def api_routes() -> list[tuple[str, str]]:
    """Every (method, path pattern) under /api/, from the URL resolver."""
    found: list[tuple[str, str]] = []

    def walk(patterns, prefix: str) -> None:
        for pattern in patterns:
            if hasattr(pattern, "url_patterns"):
                walk(pattern.url_patterns, prefix + str(pattern.pattern))
                continue
            path = "/" + re.sub(r"\^|\$", "", prefix + str(pattern.pattern))
            if not path.startswith("/api/") or pattern.name is None:
                continue  # unnamed: a route's slash-less twin (config/routing.py), the same view
            cls = getattr(pattern.callback, "cls", None)
            actions = getattr(pattern.callback, "actions", None)
            if actions:
                methods = set(actions)
            elif cls is not None:
                methods = {m for m in cls.http_method_names if hasattr(cls, m)}
            else:
                methods = {"get"}
            found.extend((method, path) for method in sorted(methods - {"head", "options"}))

    walk(get_resolver().url_patterns, "")
    return found


ROUTES = api_routes()
BODILESS = ("/activate/", "/deactivate/", "/cancel/", "/retry/", "/connect/")  # verbs that read no body
# An end user's connect names the provider app after the verb (`/api/apps/{slug}/connect/{id}/`).
BODILESS_INSIDE = ("/connect/",)
BODY_ROUTES = [(m, p) for m, p in ROUTES if m in ("post", "put", "patch")]
GET_ROUTES = [(m, p) for m, p in ROUTES if m == "get" and not p.endswith("/docs/")]


def make_provider_app(user):
    return integration_services.provider_app_create(user=user, name="fuzz", provider="twitter",
                                                    credentials=dict(TWITTER_APP_CREDENTIALS))


def route_objects(user) -> dict:
    """One object of each kind a route names, for `concrete` (the app's slug is `fuzz-app`)."""
    interaction = make_interaction(user, active=True)
    app = app_services.app_create(owner=user, name="Fuzz", slug="fuzz-app", signup="open")
    return {
        "interaction": interaction,
        "integration": make_integration(user),
        "api_key": account_services.api_key_create(user=user, name="fuzz").api_key,
        "session": Session.objects.create(user=user, interaction=interaction,
                                          version=interaction.current_version,
                                          status=Session.Status.COMPLETED, input={}),
        "app": app,
        "end_user": app_services.end_user_register(app=app, email="fuzz@example.com", password="x" * 12),
        "invitation": app_services.invitation_create(app=app, email="inv@example.com").invitation,
        "provider_app": make_provider_app(user),
    }


@pytest.fixture
def objects(user):
    return route_objects(user)


def concrete(path: str, objects) -> str:
    def replace(match: re.Match) -> str:
        name = match.group(1) or match.group(2)
        if name == "type":
            return "transform"
        if name == "slug":
            return objects["app"].slug
        if name == "app_pk":
            return str(objects["app"].id)
        if name == "provider_app_id":
            return str(objects["provider_app"].id)
        # The object of the kind named right before the parameter (else the route's first kind).
        before = path[:match.start()].rstrip("/").rsplit("/", 1)[-1]
        kind = KINDS.get(before) or KINDS[next(part for part in path.split("/") if part in KINDS)]
        return str(objects[kind].id)

    return PARAMETER.sub(replace, path)


def assert_no_5xx(response, label: str) -> None:
    # A stream (the events of a finished session) ends by itself: read it whole.
    content = b"".join(response.streaming_content) if response.streaming else response.content
    assert response.status_code < 500, (label, response.status_code, content[:300])
    if response.status_code >= 400 and response["Content-Type"].startswith("application/json"):
        error = json.loads(content)
        assert set(error) == {"code", "message", "details"}, (label, error)
        assert isinstance(error["details"], dict), (label, error)


def deep(levels: int, leaf: str = "1") -> str:
    return '{"a":' * levels + leaf + "}" * levels


def deep_array(levels: int) -> str:
    return "[" * levels + "]" * levels


LIMIT = settings.JUNCTION_MAX_JSON_DEPTH
RAW_BODIES = {
    "array nested past the recursion limit": deep_array(5000),
    "object nested past the recursion limit": deep(5000),
    "nested just under the recursion limit": deep(900),
    "nested one past the depth limit": deep(LIMIT + 1),
    "NaN literal": '{"a": NaN, "b": Infinity}',
    "number past float range": '{"a": 1e400, "b": -1e400}',
    "integer with 5000 digits": '{"a": ' + "9" * 5000 + "}",
    "bare scalar": "1",
    "bare string": '"\\r\\nX-Injected: 1"',
    "array top level": "[1, 2, 3]",
    "null": "null",
    "invalid UTF-8": b'{"a": "\xff\xfe"}',
    "NUL in a string": '{"name": "a\\u0000b", "tasks": {"t": {"type": "fail", "body": {"message": "\\u0000"}}}}',
}


def _send(client, method: str, url: str, raw) -> object:
    data = raw if isinstance(raw, bytes) else raw.encode()
    return getattr(client, method)(url, data=data, content_type="application/json",
                                   HTTP_ACCEPT="application/json")


@pytest.mark.django_db
@pytest.mark.parametrize("method,path", BODY_ROUTES, ids=[f"{m} {p}" for m, p in BODY_ROUTES])
def test_hostile_raw_bodies_never_give_a_5xx(api, objects, method, path):
    url = concrete(path, objects)
    for label, raw in RAW_BODIES.items():
        assert_no_5xx(_send(api, method, url, raw), f"{method} {url}: {label}")


@pytest.mark.django_db
@pytest.mark.parametrize("method,path", BODY_ROUTES, ids=[f"{m} {p}" for m, p in BODY_ROUTES])
def test_nesting_past_the_limit_is_a_clear_400(api, objects, method, path):
    url = concrete(path, objects)
    for raw in (deep_array(5000), deep(LIMIT + 1)):
        response = _send(api, method, url, raw)
        if response.status_code in (401, 403, 404, 405, 409) or (path.endswith(BODILESS) and response.status_code < 300):
            continue  # refused before the body is read, or a verb that reads no body
        assert response.status_code == 400, (url, response.status_code, response.content[:200])
        error = response.json()
        assert error["code"] == "json_too_deep"
        assert str(LIMIT) in error["message"]


@pytest.mark.django_db
def test_nesting_within_the_limit_is_parsed(api):
    value = json.loads(deep(LIMIT - 8, '"x"'))
    response = api.post("/api/task-types/transform/test/",
                        {"body": {"data": value, "expression": "a.a"}}, format="json")
    assert response.status_code == 200, response.content[:300]
    assert response.json()["status"] == "completed"


@pytest.mark.django_db
@pytest.mark.parametrize("method,path", BODY_ROUTES, ids=[f"{m} {p}" for m, p in BODY_ROUTES])
def test_anonymous_hostile_bodies_never_give_a_5xx(anon, objects, method, path):
    url = concrete(path, objects)
    for label, raw in RAW_BODIES.items():
        assert_no_5xx(_send(anon, method, url, raw), f"anonymous {method} {url}: {label}")


HOSTILE_QUERIES = [
    "page=1e308", "page=-1", "page=99999999999999999999", "page=NaN", "page_size=1e308",
    "status=%0D%0AX:1", "interaction=not-a-uuid", "created_after=99999-99-99",
    "created_before=-1", "is_active=maybe", "name=" + "x" * 5000, "format=sse", "format=xml",
    "name=a%00b", "interaction=%00", "status=%00", "created_after=%00", "page=%00", "wait=%00",
]


@pytest.mark.django_db
@pytest.mark.parametrize("method,path", GET_ROUTES, ids=[f"{m} {p}" for m, p in GET_ROUTES])
def test_hostile_query_strings_never_give_a_5xx(api, objects, method, path):
    url = concrete(path, objects)
    for query in HOSTILE_QUERIES:
        response = api.get(f"{url}?{query}", HTTP_ACCEPT="application/json")
        assert_no_5xx(response, f"GET {url}?{query[:40]}")


# Valid bodies per route, whose fields the property below replaces with arbitrary values.
def valid_bodies(objects) -> dict[tuple[str, str], dict]:
    interaction = f"/api/interactions/{objects['interaction'].id}/"
    integration = f"/api/integrations/{objects['integration'].id}/"
    app = f"/api/apps/{objects['app'].id}/"
    by_slug = f"/api/apps/{objects['app'].slug}/"
    provider_app = f"/api/provider-apps/{objects['provider_app'].id}/"
    definition = {"name": "fuzzed", "description": "d", "tasks": SIMPLE_TASKS, "deadline_seconds": 60,
                  "app": str(objects["app"].id), "access": "end_users", "allowed_groups": ["users"]}
    return {
        ("post", "/api/auth/register/"): {"username": "fuzz", "email": "f@example.com", "password": "x" * 12},
        ("post", "/api/auth/login/"): {"username": "alice", "password": "nope"},
        ("post", "/api/auth/refresh/"): {"refresh": "not.a.token"},
        ("post", "/api/auth/logout/"): {"refresh": "not.a.token", "everywhere": False},
        ("post", "/api/auth/password/"): {"old": "not-the-password", "new": "x" * 12},
        ("post", "/api/auth/api-keys/"): {"name": "k", "scope": "run", "interactions": [str(objects["interaction"].id)],
                                          "expires_at": "2999-01-01T00:00:00Z"},
        ("post", "/api/task-types/transform/test/"): {"body": {"data": {"a": 1}, "expression": "a"},
                                                       "integration": None, "timeout": 1},
        ("post", "/api/integrations/"): {"name": "i", "provider": "smtp",
                                         "credentials": {"host": "127.0.0.1", "port": 25}},
        ("patch", integration): {"name": "i2", "credentials": {"port": 26}},
        ("put", integration): {"name": "i3", "provider": "twitter", "credentials": {}},
        ("post", "/api/interactions/"): definition,
        ("put", interaction): definition,
        ("patch", interaction): {"deadline_seconds": 5, "tasks": SIMPLE_TASKS},
        ("post", interaction + "run/"): {"shape": {"data": {"items": [1]}}},
        ("post", "/api/apps/"): {"name": "A", "slug": "fuzzed-app", "signup": "open", "groups": ["a", "b"],
                                 "default_group": "a"},
        ("patch", app): {"name": "B", "signup": "closed", "groups": ["users", "c"],
                         "default_group": "users"},
        ("patch", f"{app}end-users/{objects['end_user'].id}/"): {"group": "users", "is_active": True},
        ("post", f"{app}invitations/"): {"email": "invitee@example.com"},
        ("post", f"{by_slug}auth/register/"): {"email": "e@example.com", "password": "x" * 12, "invitation": None},
        ("post", f"{by_slug}auth/login/"): {"email": "e@example.com", "password": "nope"},
        ("post", f"{by_slug}auth/refresh/"): {"refresh": "not.a.token"},
        ("post", f"{by_slug}auth/logout/"): {"refresh": "not.a.token"},
        ("post", f"{by_slug}auth/password/"): {"old": "not-the-password", "new": "x" * 12},
        ("post", "/api/provider-apps/"): {"name": "p", "provider": "twitter", "callback_url": "https://a.example/",
                                          "credentials": {"consumer_key": "ck", "consumer_secret": "cs-12345678"}},
        ("patch", provider_app): {"name": "p2", "callback_url": "https://b.example/",
                                  "credentials": {"consumer_secret": "cs-87654321"}},
        ("put", provider_app): {"name": "p3", "provider": "twitter", "credentials": {}},
    }


def json_values():
    scalars = st.one_of(
        st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
        st.sampled_from([1e308, -1e308, 2**63, 2**63 - 1, -1, 0, 10**12, 2**31, 1e-308]),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=40),
        st.sampled_from(["\r\nX-Injected: 1", "NaN", "-Infinity", "\x00", "x" * 70_000, "{{ a.b }}",
                         "[@,@]|[@,@]|[@,@]", "$ref", "../../etc/passwd", "1e308"]),
    )
    return st.recursive(scalars, lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=8), children, max_size=4),
        st.builds(lambda v: {"$ref": v}, st.text(max_size=20)),
        st.builds(lambda v: {"$template": v}, st.text(max_size=20)),
    ), max_leaves=12)


def _replace_paths(body: dict, prefix=()):
    """Every path to a value inside `body` (one level into nested objects)."""
    for key, value in body.items():
        yield (*prefix, key)
        if isinstance(value, dict) and len(prefix) < 2:
            yield from _replace_paths(value, (*prefix, key))


def _with(body: dict, path: tuple, value) -> dict:
    copy = json.loads(json.dumps(body))
    target = copy
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return copy


@pytest.mark.django_db
@hypothesis_settings(max_examples=60, deadline=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_any_value_in_any_field_never_gives_a_5xx(api, objects, data):
    bodies = valid_bodies(objects)
    method, url = data.draw(st.sampled_from(sorted(bodies)), label="route")
    body = bodies[(method, url)]
    path = data.draw(st.sampled_from(list(_replace_paths(body))), label="field")
    value = data.draw(json_values(), label="value")
    response = getattr(api, method)(url, _with(body, path, value), format="json",
                                    HTTP_ACCEPT="application/json")
    assert_no_5xx(response, f"{method} {url} {path}={value!r:.100}")


def test_every_body_route_has_a_valid_body_to_fuzz():
    """A new route that takes a body gets a valid body in `valid_bodies` (its fields fuzzed)."""
    objects = {kind: type("Obj", (), {"id": "ID", "slug": "ID"})() for kind in KINDS.values()}
    covered = {(m, u.replace("/ID/", "/{id}/")) for m, u in valid_bodies(objects)}
    wanted = {(m, PARAMETER.sub("{id}", p.replace("(?P<type>[a-z0-9_]+)", "transform")))
              for m, p in BODY_ROUTES}
    # Routes without a body of their own (verbs such as activate, cancel, retry).
    bodiless = {p for p in wanted if p[1].endswith(BODILESS) or any(verb in p[1] for verb in BODILESS_INSIDE)}
    missing = wanted - covered - bodiless
    assert not missing, f"add a valid body for: {sorted(missing)}"


@pytest.mark.django_db
@pytest.mark.parametrize("levels", [LIMIT + 10, 5000])
def test_the_admin_refuses_a_definition_nested_too_deeply(admin_client, user, levels):
    interaction = make_interaction(user)
    url = f"/admin/interactions/interaction/{interaction.pk}/change/"
    response = admin_client.post(url, {"user": user.pk, "name": interaction.name, "description": "",
                                       "tasks": deep(levels), "versions-TOTAL_FORMS": 0,
                                       "versions-INITIAL_FORMS": 0})
    assert response.status_code == 200  # the form again, with the error
    assert "Nested deeper than" in response.content.decode()
    assert interaction.versions.count() == 1


HOSTILE_HEADERS = [
    {"HTTP_AUTHORIZATION": "Bearer " + "a" * 10_000},
    {"HTTP_AUTHORIZATION": "Bearer a.b.c"},
    {"HTTP_AUTHORIZATION": "Api-Key " + "\u00e9" * 100},
    {"HTTP_AUTHORIZATION": "Api-Key a b c"},
    {"HTTP_AUTHORIZATION": "Api-Key jk_\x00"},
    {"HTTP_AUTHORIZATION": "Basic Zm9vOmJhcg=="},
    {"HTTP_PREFER": "wait=1e308"}, {"HTTP_PREFER": "wait=nan"}, {"HTTP_PREFER": "wait=-1"},
    {"HTTP_IDEMPOTENCY_KEY": "k" * 10_000}, {"HTTP_IDEMPOTENCY_KEY": "a\x00b"},
    {"HTTP_IDEMPOTENCY_KEY": "\u00e9\r\n"},
    {"HTTP_ACCEPT": "text/event-stream"}, {"HTTP_ACCEPT": "application/xml"},
    {"CONTENT_TYPE": "application/json; charset=utf-32"}, {"CONTENT_TYPE": "application/json; charset=rot13"},
]


@pytest.mark.django_db
@pytest.mark.parametrize("headers", HOSTILE_HEADERS, ids=[repr(h)[:50] for h in HOSTILE_HEADERS])
def test_hostile_headers_never_give_a_5xx(api, objects, headers):
    run = f"/api/interactions/{objects['interaction'].id}/run/"
    for method, url in [("post", run), ("get", "/api/interactions/"), ("post", "/api/auth/login/")]:
        extra = {"content_type": "application/json", **headers} if method == "post" else headers
        data = b'{"shape": {"data": {"items": [1]}}}' if method == "post" else None
        response = getattr(api, method)(url, data=data, **extra)
        assert_no_5xx(response, f"{method} {url} {list(headers)[0]}")


@pytest.mark.django_db
@pytest.mark.parametrize("credentials,field", [
    ({"port": 2**63}, "credentials.port"), ({"port": 0}, "credentials.port"), ({"port": 65536}, "credentials.port"),
    ({"host": "h" * 5000}, "credentials.host"), ({"password": "p\x00"}, "credentials.password"),
    ({"port": True}, "credentials.port"),
])
def test_integration_credentials_out_of_range_are_400(api, credentials, field):
    body = {"name": "mail", "provider": "smtp",
            "credentials": {"host": "127.0.0.1", "from_email": "a@example.com", **credentials}}
    response = api.post("/api/integrations/", body, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()["details"]
