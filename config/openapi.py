"""The OpenAPI document (drf-spectacular): one error component, every error an operation can
answer, and descriptions written for API users.

How to document an operation: `extend_schema(summary=..., description=..., responses=...)` on
the view, with the errors only that operation answers added by `errors(409, ...)`. The errors
that follow from what a view is — every request may be refused (400) and may find the database
down (503), an authenticated view answers 401, a view a `run` API key may not use answers 403, a
route with an id (and a list, for a page past the end) answers 404, a body may be too large
(413) or not JSON (415), a throttled view answers 429 — are added here, so no view lists them
by hand. Docstrings are for the code's readers: an operation's description is only what
`extend_schema` says (`docs/api.md`).
"""
from __future__ import annotations

from typing import Any, Literal

from django.core.validators import RegexValidator
from drf_spectacular.drainage import get_override
from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from drf_spectacular.utils import OpenApiResponse
from rest_framework import permissions, serializers

from config.json_input import UUID


class ErrorSerializer(serializers.Serializer):
    """The one error shape (config/errors.py)."""

    code = serializers.CharField(help_text="A snake_case code to branch on, e.g. `validation_error`, `not_found`.")
    message = serializers.CharField(help_text="A human-readable explanation.")
    details = serializers.DictField(
        child=serializers.JSONField(),
        help_text="For validation errors: each offending field, as a dotted path (`name`, "
        "`tasks.fetch.body.url`, `fetch.url` for a run's input, a query parameter or a header), "
        "mapped to its messages. Otherwise an object, often empty.",
    )

    class Meta:
        ref_name = "Error"


# What each status means in Junction, as documented on every operation that can answer it.
ERROR_DESCRIPTIONS: dict[int, str] = {
    400: "Invalid request: `validation_error` (`details` names each offending field), `json_too_deep`, "
    "`parse_error` (not JSON), `invalid_header` (a control character in a header).",
    401: "`not_authenticated` (no credentials), `authentication_failed` or `token_not_valid` "
    "(wrong, expired or revoked credentials).",
    403: "`insufficient_scope`: an API key of scope `run` may only run interactions and read their sessions.",
    404: "`not_found`: no such object, or not yours (another user's object is never 403).",
    409: "`conflict`: the object is not in a state that allows this.",
    413: "`request_too_large`: the body is larger than JUNCTION_MAX_REQUEST_BYTES.",
    415: "`unsupported_media_type`: the API takes JSON bodies only (`Content-Type: application/json`).",
    422: "`idempotency_conflict`: this Idempotency-Key was used with a different body.",
    429: "`throttled` (or a named limit): too many requests; `Retry-After` says when to try again.",
    503: "`service_unavailable`: the database, the broker or the cache is down; try again later.",
}
LIST_404 = "`not_found`: a `page` past the last one."
RETRY_AFTER = {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait before trying again."}}


def errors(*codes: int | tuple[int, str]) -> dict[int, OpenApiResponse]:
    """Error responses to merge into `extend_schema(responses=...)`: `errors(409, 422)`, or in the
    operation's own words `errors((409, "`interaction_inactive`: activate it first."))`."""
    found: dict[int, OpenApiResponse] = {}
    for item in codes:
        code, description = item if isinstance(item, tuple) else (item, ERROR_DESCRIPTIONS[item])
        found[code] = OpenApiResponse(ErrorSerializer, description=description)
    return found


NO_NUL = "^[^\\u0000]*$"


def exact_strings(result: dict[str, Any], **kwargs) -> dict[str, Any]:
    """Postprocessing hook: say in patterns what the server accepts of a string.

    Each `format: uuid` gets its canonical pattern: in OpenAPI 3.1 a `format` is an annotation a
    validator may ignore (config/json_input.py, config/listing.py and the routes' ids accept that
    form only). A free-text query parameter may hold no NUL (config/limits.py).
    """
    stack: list[Any] = [result]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if item.get("format") == "uuid" and "pattern" not in item:
                item["pattern"] = UUID.pattern
            if item.get("in") == "query" and isinstance(item.get("schema"), dict):
                schema = item["schema"]
                if schema.get("type") == "string" and not {"pattern", "enum", "format"} & set(schema):
                    schema["pattern"] = NO_NUL
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return result


# Where an operation's answer leads: the operations on the object it created or returned
# (OpenAPI links; clients and the fuzzer's stateful phase follow them).
_LINKS: dict[tuple[str, str, str], str] = {
    ("/api/interactions/", "post", "201"): "/api/interactions/{id}/",
    ("/api/interactions/{id}/run/", "post", "202"): "/api/sessions/{id}/",
    ("/api/interactions/{id}/run/", "post", "200"): "/api/sessions/{id}/",
    ("/api/sessions/{id}/retry/", "post", "202"): "/api/sessions/{id}/",
    ("/api/integrations/", "post", "201"): "/api/integrations/{id}/",
    ("/api/auth/api-keys/", "post", "201"): "/api/auth/api-keys/{id}/",
    ("/api/apps/", "post", "201"): "/api/apps/{id}/",
    ("/api/provider-apps/", "post", "201"): "/api/provider-apps/{id}/",
}


def resource_links(result: dict[str, Any], **kwargs) -> dict[str, Any]:
    """Postprocessing hook: link each creating answer to every operation on what it created."""
    paths = result["paths"]
    for (path, method, code), target in _LINKS.items():
        response = paths.get(path, {}).get(method, {}).get("responses", {}).get(code)
        if response is None:
            continue
        links = response.setdefault("links", {})
        for other, operations in paths.items():
            if not other.startswith(target):
                continue
            for operation in operations.values():
                name = operation["operationId"]
                links[name] = {"operationId": name, "parameters": {"id": "$response.body#/id"}}
    return result


class AutoSchema(SpectacularAutoSchema):
    """drf-spectacular's AutoSchema with Junction's error responses and without docstrings."""

    def get_description(self) -> str:  # type: ignore[override]
        # `extend_schema(description=...)` overrides this; docstrings never reach the document.
        return ""

    def _map_basic_serializer(self, serializer, direction):
        schema = super()._map_basic_serializer(serializer, direction)
        # Only `extend_schema_serializer(description=...)` describes a component, not its docstring.
        schema.pop("description", None)
        description = get_override(serializer, "description", None)
        if description:
            schema["description"] = description
        return schema

    def _map_serializer_field(self, field, direction, bypass_extensions=False):
        schema = super()._map_serializer_field(field, direction, bypass_extensions)
        # OpenAPI 3.1: a nullable "any" (JSONField(allow_null=True)) comes out as `oneOf: [{}, {type:
        # null}]`, which null matches twice and so fails; "any" already includes null.
        if isinstance(schema, dict) and {} in schema.get("oneOf", []):
            del schema["oneOf"]
        # DRF's CharField refuses a NUL (ProhibitNullCharactersValidator): say so.
        if (
            direction == "request" and isinstance(field, serializers.CharField) and isinstance(schema, dict)
            and schema.get("type") == "string" and not {"pattern", "enum", "format", "$ref"} & set(schema)
            and not any(isinstance(validator, RegexValidator) for validator in field.validators)  # its own pattern
        ):
            schema["pattern"] = NO_NUL
        return schema

    def _map_response_type_hint(self, method):
        schema = super()._map_response_type_hint(method)
        schema.pop("description", None)  # a SerializerMethodField's docstring; its help_text describes it
        return schema

    def _error_statuses(self) -> dict[int, str]:
        view = self.view
        found: dict[int, str] = {400: ERROR_DESCRIPTIONS[400], 503: ERROR_DESCRIPTIONS[503]}
        allow_any = any(isinstance(p, permissions.AllowAny) for p in view.get_permissions())
        if view.get_authenticators() and not allow_any:
            found[401] = ERROR_DESCRIPTIONS[401]
            scoped = any(type(p).__name__ == "ApiKeyScope" for p in view.get_permissions())
            if scoped and getattr(view, "action", None) not in getattr(view, "run_key_actions", ()):
                found[403] = ERROR_DESCRIPTIONS[403]
        if "{" in self.path:
            found[404] = ERROR_DESCRIPTIONS[404]
        elif self.method == "GET" and self._is_list_view() and self._get_paginator() is not None:
            found[404] = LIST_404
        if self.method in ("POST", "PUT", "PATCH"):
            found[413] = ERROR_DESCRIPTIONS[413]
            found[415] = ERROR_DESCRIPTIONS[415]
        if view.get_throttles():
            found[429] = ERROR_DESCRIPTIONS[429]
        return found

    def _error_response(self, description: str, code: str) -> dict[str, Any]:
        component = self.resolve_serializer(ErrorSerializer, "response")
        response: dict[str, Any] = {
            "content": {"application/json": {"schema": component.ref}},
            "description": description,
        }
        if code == "429":
            response["headers"] = RETRY_AFTER
        return response

    def _get_response_bodies(self, direction: Literal["request", "response"] = "response") -> dict[str, Any]:
        responses: dict[str, Any] = {str(code): body for code, body in super()._get_response_bodies(direction).items()}
        for number, description in self._error_statuses().items():
            responses.setdefault(str(number), self._error_response(description, str(number)))
        for code, response in responses.items():
            if code >= "400" and "content" not in response:  # an OpenApiResponse with words only
                response.update(self._error_response(response.get("description") or ERROR_DESCRIPTIONS.get(int(code), ""), code))
            elif code == "429" and "headers" not in response:
                response["headers"] = RETRY_AFTER
        return dict(sorted(responses.items()))
