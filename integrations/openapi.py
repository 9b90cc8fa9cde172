"""Integrations in the OpenAPI document: a create body per provider, typed from its fields.

`POST /api/integrations/` is one of the registered providers (`oneOf` with a `discriminator` on
`provider`), each with its own `credentials` object built from the provider's public description
(`Provider.describe()`, what `GET /api/providers/` shows). A new provider appears here as soon as
it is registered.
"""
from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiSerializerExtension
from drf_spectacular.plumbing import ResolvedComponent

from integrations.providers import providers
from integrations.serializers import oauth_provider_keys

_JSON_TYPES = {"string": "string", "integer": "integer", "boolean": "boolean"}


def credential_schema(field: dict[str, Any]) -> dict[str, Any]:
    """The JSON Schema of one credential value, from its description."""
    schema: dict[str, Any] = {"type": _JSON_TYPES[field["type"]]}
    if field["type"] == "string":
        schema["maxLength"] = field["max_length"]
        schema["pattern"] = "^[^\\u0000]*$"  # PostgreSQL cannot store a NUL
        if field["required"]:
            schema["minLength"] = 1
    for bound in ("minimum", "maximum"):
        if field.get(bound) is not None:
            schema[bound] = field[bound]
    if field.get("default") is not None:
        schema["default"] = field["default"]
    if field["secret"]:
        schema["description"] = "Secret: encrypted at rest, never shown back."
        schema["writeOnly"] = True
    return schema


def credentials_schema(described: dict[str, Any], *, partial: bool = False) -> dict[str, Any]:
    fields = described["fields"]
    schema: dict[str, Any] = {
        "type": "object",
        "additionalProperties": False,
        "properties": {field["name"]: credential_schema(field) for field in fields},
    }
    required = [field["name"] for field in fields if field["required"]]
    if required and not partial:
        schema["required"] = required
    return schema


class IntegrationInputExtension(OpenApiSerializerExtension):
    target_class = "integrations.serializers.IntegrationInputSerializer"

    def map_serializer(self, auto_schema, direction):
        base = auto_schema._map_serializer(self.target, direction, bypass_extensions=True)
        mapping: dict[str, str] = {}
        for provider in sorted(providers, key=lambda p: p.key):
            described = provider.describe()
            schema = {
                **base,
                "title": described["name"],
                "properties": {
                    **base["properties"],
                    "provider": {"type": "string", "const": provider.key},
                    "credentials": credentials_schema(described),
                },
            }
            component = ResolvedComponent(
                name=f"IntegrationInput_{provider.key}", type=ResolvedComponent.SCHEMA,
                object=f"IntegrationInput_{provider.key}", schema=schema,
            )
            auto_schema.registry.register_on_missing(component)
            mapping[provider.key] = component.ref["$ref"]
        return {
            "oneOf": [{"$ref": ref} for ref in mapping.values()],
            "discriminator": {"propertyName": "provider", "mapping": mapping},
        }


class IntegrationUpdateExtension(OpenApiSerializerExtension):
    """PATCH: the provider is the stored one, so `credentials` is any provider's fields, each optional."""

    target_class = "integrations.serializers.IntegrationUpdateSerializer"

    def map_serializer(self, auto_schema, direction):
        schema = auto_schema._map_basic_serializer(self.target, direction)
        schema["properties"]["credentials"] = {
            "anyOf": [credentials_schema(p.describe(), partial=True) for p in sorted(providers, key=lambda p: p.key)],
            "description": "New values for some of the integration's provider's fields (merged over the stored "
            "ones). Changing where the secrets go (a `destination` field) requires sending the secrets again.",
        }
        return schema


def _app_fields(described: dict[str, Any]) -> dict[str, Any]:
    return {**described, "fields": [field for field in described["fields"] if field["app"]]}


# What `callback_url` may be: empty, or an http(s) URL (integrations/services.py `_check_callback_url`).
CALLBACK_URL = {
    "type": "string", "maxLength": 2000, "pattern": "^(?:[hH][tT][tT][pP][sS]?://[^\\s]+)?$",
    "description": "Where to send the account owner's browser once connected (with `?integration=<id>`); "
    "empty for none. An http or https URL.",
}


class ProviderAppInputExtension(OpenApiSerializerExtension):
    """`POST /api/provider-apps/`: one of the OAuth providers, with its app's fields as `credentials`."""

    target_class = "integrations.serializers.ProviderAppInputSerializer"

    def map_serializer(self, auto_schema, direction):
        base = auto_schema._map_serializer(self.target, direction, bypass_extensions=True)
        mapping: dict[str, str] = {}
        for provider in sorted(providers, key=lambda p: p.key):
            if provider.key not in oauth_provider_keys():
                continue
            described = provider.describe()
            schema = {
                **base,
                "title": described["name"],
                "properties": {
                    **base["properties"],
                    "provider": {"type": "string", "const": provider.key},
                    "credentials": credentials_schema(_app_fields(described)),
                    "callback_url": {**CALLBACK_URL, "default": ""},
                },
            }
            component = ResolvedComponent(
                name=f"ProviderAppInput_{provider.key}", type=ResolvedComponent.SCHEMA,
                object=f"ProviderAppInput_{provider.key}", schema=schema,
            )
            auto_schema.registry.register_on_missing(component)
            mapping[provider.key] = component.ref["$ref"]
        return {
            "oneOf": [{"$ref": ref} for ref in mapping.values()],
            "discriminator": {"propertyName": "provider", "mapping": mapping},
        }


class ProviderAppUpdateExtension(OpenApiSerializerExtension):
    """PATCH: the provider is the stored one, so `credentials` is any OAuth provider's app fields, each optional."""

    target_class = "integrations.serializers.ProviderAppUpdateSerializer"

    def map_serializer(self, auto_schema, direction):
        schema = auto_schema._map_basic_serializer(self.target, direction)
        schema["properties"]["credentials"] = {
            "anyOf": [credentials_schema(_app_fields(p.describe()), partial=True)
                      for p in sorted(providers, key=lambda p: p.key) if p.key in oauth_provider_keys()],
            "description": "New values for some of the app's fields (merged over the stored ones).",
        }
        schema["properties"]["callback_url"] = CALLBACK_URL
        return schema
