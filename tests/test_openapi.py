"""The OpenAPI document and an offline Swagger UI (SPEC 2.4, issue 2 item 9, issue 9 item 6).

What the document promises is fuzzed against a live server in tests/test_fuzz_api.py; these tests
check what it says: the error responses of each operation, the typed definition, PATCH bodies,
list parameters, headers, and that no docstring of the code reaches it.
"""
from __future__ import annotations

import inspect
import re
from urllib.parse import urlsplit

import pytest
import yaml
from drf_spectacular.validation import validate_schema

ROUTES = [
    "/api/auth/register/", "/api/auth/login/", "/api/auth/refresh/", "/api/auth/me/",
    "/api/auth/api-keys/", "/api/auth/api-keys/{id}/",
    "/api/task-types/", "/api/task-types/{type}/",
    "/api/providers/", "/api/integrations/", "/api/integrations/{id}/",
    "/api/interactions/", "/api/interactions/{id}/", "/api/interactions/{id}/activate/",
    "/api/interactions/{id}/deactivate/", "/api/interactions/{id}/versions/",
    "/api/interactions/{id}/endpoint/",
]


@pytest.fixture
def schema(anon) -> dict:
    response = anon.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200, response.content
    return response.json()


@pytest.mark.django_db
class TestSchema:
    def test_schema_is_a_valid_openapi_document(self, schema):
        assert schema["openapi"].startswith("3.")
        assert schema["info"]["title"] == "Junction API"
        validate_schema(schema)  # raises on an invalid document

    def test_schema_is_served_as_yaml_by_default(self, anon):
        response = anon.get("/api/schema/")
        assert response.status_code == 200
        assert yaml.safe_load(response.content)["openapi"].startswith("3.")

    def test_schema_lists_every_route(self, schema):
        assert set(ROUTES) <= set(schema["paths"])

    def test_methods_are_described(self, schema):
        paths = schema["paths"]
        assert {"get", "put", "patch", "delete"} <= set(paths["/api/interactions/{id}/"])
        assert {"get", "post"} <= set(paths["/api/interactions/"])
        assert "post" in paths["/api/interactions/{id}/activate/"]
        assert "put" not in paths["/api/integrations/{id}/"]

    def test_both_authentication_schemes_are_described(self, schema):
        schemes = schema["components"]["securitySchemes"]
        assert schemes["jwtAuth"]["scheme"] == "bearer"
        assert schemes["ApiKeyAuth"] == {**schemes["ApiKeyAuth"], "type": "apiKey", "in": "header",
                                         "name": "Authorization"}

    def test_paths_are_documented_once_with_the_trailing_slash(self, schema):
        assert all(path.endswith("/") for path in schema["paths"]), [p for p in schema["paths"] if not p.endswith("/")]

    def test_api_key_creation_documents_the_key(self, schema):
        created = schema["paths"]["/api/auth/api-keys/"]["post"]["responses"]["201"]
        ref = created["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
        assert "key" in schema["components"]["schemas"][ref]["properties"]


@pytest.mark.django_db
class TestSwaggerUiOffline:
    def _assets(self, html: str) -> list[str]:
        return re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html)

    def test_docs_page_uses_only_local_assets(self, anon):
        response = anon.get("/api/docs/")
        assert response.status_code == 200
        html = response.content.decode()
        assert "swagger-ui" in html.lower()
        assets = self._assets(html)
        assert assets, html
        for url in assets:
            parts = urlsplit(url)
            assert not parts.scheme and not parts.netloc, f"external asset: {url}"
            assert url.startswith("/static/") or url.startswith("/api/"), url
        # No CDN host anywhere (a random CSRF token may well contain the letters "cdn").
        assert not re.search(r"[/.]cdn", html.lower())
        assert "//unpkg" not in html and "jsdelivr" not in html

    def test_every_asset_is_served(self, anon):
        html = anon.get("/api/docs/").content.decode()
        static = [url for url in self._assets(html) if url.startswith("/static/")]
        assert any(url.endswith(".js") for url in static) and any(url.endswith(".css") for url in static)
        for url in self._assets(html):
            response = anon.get(url)
            assert response.status_code == 200, url
            body = b"".join(response.streaming_content) if response.streaming else response.content
            assert body, url

    def test_swagger_ui_initialiser_points_at_the_local_schema(self, anon):
        html = anon.get("/api/docs/").content.decode()
        scripts = [url for url in self._assets(html) if url.startswith("/api/")]
        text = html + "".join(anon.get(url).content.decode() for url in scripts)
        assert "/api/schema/" in text


def operations(schema):
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            yield path, method, operation


ERROR_REF = "#/components/schemas/Error"


@pytest.mark.django_db
class TestErrorResponses:
    def test_the_error_component_is_the_one_error_shape(self, schema):
        error = schema["components"]["schemas"]["Error"]
        assert set(error["properties"]) == {"code", "message", "details"}
        assert set(error["required"]) == {"code", "message", "details"}

    def test_every_error_response_is_the_error_component(self, schema):
        for path, method, operation in operations(schema):
            for code, response in operation["responses"].items():
                if code >= "400":
                    assert response["content"]["application/json"]["schema"] == {"$ref": ERROR_REF}, (path, method, code)
                    assert response["description"], (path, method, code)

    def test_every_operation_documents_400_and_503(self, schema):
        for path, method, operation in operations(schema):
            assert {"400", "503"} <= set(operation["responses"]), (path, method)

    def test_authenticated_operations_document_401_and_open_ones_do_not(self, schema):
        for path, method, operation in operations(schema):
            if path in ("/api/auth/register/", "/api/auth/logout/", "/api/schema/", "/api/oauth/callback/",
                        "/api/apps/{slug}/auth/register/"):
                assert "401" not in operation["responses"], (path, method)
            elif path.startswith("/api/"):
                assert "401" in operation["responses"], (path, method)

    def test_routes_with_an_id_document_404(self, schema):
        for path, method, operation in operations(schema):
            if "{" in path:
                assert "404" in operation["responses"], (path, method)

    def test_bodies_document_413_and_415(self, schema):
        for path, method, operation in operations(schema):
            if method in ("post", "put", "patch"):
                assert {"413", "415"} <= set(operation["responses"]), (path, method)

    def test_only_run_and_session_reads_are_open_to_run_keys(self, schema):
        open_to_run_keys = {("/api/interactions/{id}/run/", "post"), ("/api/sessions/", "get"),
                            ("/api/sessions/{id}/", "get"), ("/api/sessions/{id}/events/", "get")}
        for path, method, operation in operations(schema):
            # The schemes say who may call: anonymous and end users' routes take no API key, so
            # no scope to lack; their own 403s (`signup_closed`, `group_not_allowed`) are others.
            takes_api_keys = any("ApiKeyAuth" in scheme for scheme in operation.get("security", []))
            forbidden = operation["responses"].get("403", {}).get("description", "")
            expected = takes_api_keys and (path, method) not in open_to_run_keys
            assert ("insufficient_scope" in forbidden) == expected, (path, method)

    def test_end_users_routes_take_end_user_tokens_only(self, schema):
        for path, method, operation in operations(schema):
            if path.startswith("/api/apps/{slug}/"):
                assert [list(scheme) for scheme in operation.get("security", [])] in ([["endUserJwtAuth"]], [[]]), (path, method)

    def test_throttled_operations_document_429_with_retry_after(self, schema):
        for path, method in [("/api/interactions/{id}/run/", "post"), ("/api/sessions/{id}/retry/", "post"),
                             ("/api/sessions/{id}/events/", "get"), ("/api/task-types/{type}/test/", "post"),
                             ("/api/auth/login/", "post"), ("/api/auth/register/", "post")]:
            response = schema["paths"][path][method]["responses"]["429"]
            assert "Retry-After" in response["headers"], (path, method)

    def test_run_documents_its_conflicts_and_the_replay_header(self, schema):
        run = schema["paths"]["/api/interactions/{id}/run/"]["post"]
        assert {"200", "202", "400", "401", "404", "409", "413", "415", "422", "429", "503"} <= set(run["responses"])
        for code in ("200", "202"):
            headers = run["responses"][code]["headers"]
            assert {"Location", "Idempotent-Replayed"} <= set(headers)
        assert "interaction_inactive" in run["responses"]["409"]["description"]
        assert "idempotency_conflict" in run["responses"]["422"]["description"]


def _docstrings() -> set[str]:
    """Every docstring of the project's classes and functions, as drf-spectacular would show it."""
    import importlib
    import pkgutil

    found: set[str] = set()
    for package in ("accounts", "integrations", "interactions", "tasks_catalog", "config"):
        module = importlib.import_module(package)
        for info in pkgutil.walk_packages(module.__path__, f"{package}."):
            if ".migrations" in info.name or ".management" in info.name:
                continue
            loaded = importlib.import_module(info.name)
            for _, obj in inspect.getmembers(loaded):
                if inspect.isclass(obj) or inspect.isfunction(obj):
                    doc = inspect.getdoc(obj)
                    if doc and getattr(obj, "__module__", "").startswith(package):
                        found.add(doc.splitlines()[0].strip())
                    for _, member in inspect.getmembers(obj, inspect.isfunction) if inspect.isclass(obj) else []:
                        doc = inspect.getdoc(member)
                        if doc and getattr(member, "__module__", "").startswith(package):
                            found.add(doc.splitlines()[0].strip())
    return found


@pytest.mark.django_db
def test_no_docstring_of_the_code_reaches_the_document(schema):
    docstrings = _docstrings()
    assert "Scope `get_queryset()` to the requesting user through `owned_queryset`." in docstrings
    described: list[str] = []
    stack: list = [schema]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if isinstance(item.get("description"), str):
                described.append(item["description"])
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    leaked = [text for text in described if any(doc and doc in text for doc in docstrings if len(doc) > 20)]
    assert leaked == []


@pytest.mark.django_db
class TestTypedDefinition:
    def test_a_task_is_one_of_the_task_types_by_its_type(self, schema):
        from tasks_catalog.registry import task_types

        components = schema["components"]["schemas"]
        task = components["Task"]
        assert task["discriminator"]["propertyName"] == "type"
        assert set(task["discriminator"]["mapping"]) == {t.key for t in task_types}
        for task_type in task_types:
            typed = components[f"Task_{task_type.key}"]
            assert typed["properties"]["type"]["const"] == task_type.key
            assert typed["additionalProperties"] is False
            body = typed["properties"]["body"]
            assert set(body["properties"]) == {spec.name for spec in task_type.fields}
            assert body["additionalProperties"] is False

    def test_a_field_takes_a_literal_a_blank_a_reference_and_for_text_a_template(self, schema):
        components = schema["components"]["schemas"]
        url = components["Task_http_request"]["properties"]["body"]["properties"]["url"]["anyOf"]
        assert {"type": "null"} in url
        assert {"$ref": "#/components/schemas/Reference"} in url
        assert {"$ref": "#/components/schemas/Template"} in url
        assert any(option.get("type") == "string" and option.get("maxLength") for option in url)
        seconds = components["Task_delay"]["properties"]["body"]["properties"]["seconds"]["anyOf"]
        assert {"$ref": "#/components/schemas/Template"} not in seconds  # a template makes text
        assert any(option.get("type") == "number" for option in seconds)
        assert components["Reference"]["required"] == ["$ref"]
        assert components["Template"]["required"] == ["$template"]

    def test_a_task_needing_a_provider_requires_an_integration(self, schema):
        components = schema["components"]["schemas"]
        assert "integration" in components["Task_send_tweet"]["required"]
        assert components["Task_transform"]["properties"]["integration"] == {
            "type": "null", "description": "This task type takes no integration."}

    def test_create_update_and_read_share_the_typed_tasks(self, schema):
        components = schema["components"]["schemas"]
        for name in ("InteractionInputRequest", "PatchedInteractionInputRequest", "InteractionOutput"):
            assert components[name]["properties"]["tasks"]["additionalProperties"] == {
                "$ref": "#/components/schemas/Task"}, name

    def test_integrations_are_typed_per_provider(self, schema):
        from integrations.providers import providers

        body = schema["components"]["schemas"]["IntegrationInputRequest"]
        assert set(body["discriminator"]["mapping"]) == {p.key for p in providers}
        smtp = schema["components"]["schemas"]["IntegrationInput_smtp"]["properties"]["credentials"]
        assert set(smtp["required"]) == {"host", "from_email"}
        assert smtp["properties"]["port"]["maximum"] == 65535


@pytest.mark.django_db
class TestOperations:
    def test_patch_bodies_are_partial(self, schema):
        components = schema["components"]["schemas"]
        for path in ("/api/interactions/{id}/", "/api/integrations/{id}/"):
            ref = schema["paths"][path]["patch"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
            component = components[ref.rsplit("/", 1)[1]]
            assert not component.get("required"), path
        patch = schema["paths"]["/api/interactions/{id}/"]["patch"]["requestBody"]["content"]["application/json"]
        assert patch["schema"]["$ref"].endswith("/PatchedInteractionInputRequest")
        put = schema["paths"]["/api/interactions/{id}/"]["put"]["requestBody"]["content"]["application/json"]
        assert set(components["InteractionInputRequest"]["required"]) == {"name", "tasks"}, put

    def test_every_paginated_list_documents_page_size_ordering_and_search(self, schema, settings):
        lists = ["/api/interactions/", "/api/sessions/", "/api/integrations/", "/api/auth/api-keys/",
                 "/api/interactions/{id}/versions/"]
        for path in lists:
            parameters = {p["name"]: p for p in schema["paths"][path]["get"]["parameters"]}
            assert {"page", "page_size", "ordering", "search"} <= set(parameters), path
            assert parameters["page_size"]["schema"]["maximum"] == settings.JUNCTION_MAX_PAGE_SIZE
            assert parameters["ordering"]["schema"]["pattern"].startswith("^-?(?:")

    def test_ids_are_canonical_uuids(self, schema):
        parameter = next(p for p in schema["paths"]["/api/interactions/{id}/"]["get"]["parameters"] if p["name"] == "id")
        assert re.match(parameter["schema"]["pattern"], "3f2b8c1e-0a4d-4f5e-9b6a-1c2d3e4f5a6b")
        assert not re.match(parameter["schema"]["pattern"], "3f2b8c1e0a4d4f5e9b6a1c2d3e4f5a6b")


@pytest.mark.django_db
def test_creating_answers_link_to_the_operations_on_what_they_created(schema):
    created = schema["paths"]["/api/interactions/"]["post"]["responses"]["201"]["links"]
    assert {"interactions_run_create", "interactions_retrieve", "interactions_destroy"} <= set(created)
    assert created["interactions_run_create"]["parameters"] == {"id": "$response.body#/id"}
    ran = schema["paths"]["/api/interactions/{id}/run/"]["post"]["responses"]["202"]["links"]
    assert {"sessions_retrieve", "sessions_cancel_create", "sessions_retry_create", "sessions_events_retrieve"} <= set(ran)
@pytest.mark.django_db
def test_the_end_users_connect_route_is_documented(schema):
    route = schema["paths"]["/api/apps/{slug}/connect/{provider_app_id}/"]["post"]
    assert {"200", "401", "404"} <= set(route["responses"])
    assert route["security"] == [{"endUserJwtAuth": []}]
    ok = route["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    assert set(schema["components"]["schemas"][ok]["properties"]) == {"authorize_url", "state"}
