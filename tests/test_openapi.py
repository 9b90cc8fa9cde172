"""The OpenAPI document and an offline Swagger UI (SPEC 2.4, issue 2 item 9)."""
from __future__ import annotations

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
        assert "cdn" not in html.lower()
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


@pytest.mark.django_db
def test_the_end_users_connect_route_is_documented(schema):
    route = schema["paths"]["/api/apps/{slug}/connect/{provider_app_id}/"]["post"]
    assert {"200", "401", "404"} <= set(route["responses"])
    assert route["security"] == [{"endUserJwtAuth": []}]
    ok = route["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    assert set(schema["components"]["schemas"][ok]["properties"]) == {"authorize_url", "state"}
