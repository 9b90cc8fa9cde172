"""Input serializers that take the JSON types the OpenAPI document states, and nothing else.

DRF's fields coerce: a CharField takes `5` as "5", an IntegerField takes "5" and 5.0, a
BooleanField takes "yes" and 1, a UUIDField takes an integer. A client that sends a number where
the document says string is wrong, and saying so (400 naming the field) keeps clients honest and
the document exact. `JsonTypedInput` checks each field's JSON type before DRF's own validation.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from rest_framework import serializers
from rest_framework.exceptions import ValidationError

_STRING_FIELDS = (serializers.CharField, serializers.UUIDField, serializers.DateTimeField, serializers.DateField)
# The forms the document's `format: uuid` and `format: date-time` (RFC 3339) name; DRF would also
# read hex without dashes, an integer, "2026-12-01 10:00" or an offset PostgreSQL cannot store.
UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})$")


def _type_problem(field: serializers.Field, value: Any) -> str | None:
    """Return why `value` is not of `field`'s JSON type, or None (None values: DRF's allow_null)."""
    if value is None:
        return None
    if isinstance(field, serializers.BooleanField):
        return None if isinstance(value, bool) else "Must be a boolean."
    if isinstance(field, serializers.IntegerField):
        return None if isinstance(value, int) and not isinstance(value, bool) else "Must be an integer."
    if isinstance(field, (serializers.FloatField, serializers.DecimalField)):
        return None if isinstance(value, (int, float)) and not isinstance(value, bool) else "Must be a number."
    if isinstance(field, serializers.ChoiceField):
        if all(isinstance(choice, str) for choice in field.choices):
            return None if isinstance(value, str) else "Must be a string."
        return None
    if isinstance(field, _STRING_FIELDS):
        if not isinstance(value, str):
            return "Must be a string."
        if isinstance(field, serializers.UUIDField) and not UUID.fullmatch(value):
            return "Must be a UUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)."
        if isinstance(field, serializers.DateTimeField) and not DATE_TIME.fullmatch(value):
            return "Must be an RFC 3339 date-time, e.g. 2026-12-01T10:00:00Z."
        return None
    if isinstance(field, serializers.ListField) and isinstance(value, list):
        for index, item in enumerate(value):
            problem = _type_problem(field.child, item)
            if problem:
                return f"Item {index}: {problem}"
    return None


class JsonTypedInput:
    """Mixin for input serializers: a value of the wrong JSON type is a 400 naming the field.

    Strings are taken as sent: DRF would strip leading and trailing whitespace (Unicode's, which
    no JSON Schema pattern states the same way) and then call a blank-looking string blank.
    """

    def get_fields(self):
        fields = super().get_fields()
        for field in fields.values():
            if isinstance(field, serializers.CharField):
                field.trim_whitespace = False
        return fields

    def to_internal_value(self, data):
        if isinstance(data, Mapping):
            problems = {
                field.field_name: [problem]
                for field in self.fields.values()
                if not field.read_only and field.field_name in data
                and (problem := _type_problem(field, data[field.field_name]))
            }
            if problems:
                raise ValidationError(problems)
        return super().to_internal_value(data)
