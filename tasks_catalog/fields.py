"""The one field vocabulary, and the one validator of values against it.

A `FieldSpec` describes a field of a task type's body (and so a blank a run fills in) and a
field of a provider's credentials; `validate` checks a mapping of values against specs — a
task's concrete body (the executor, the test endpoint), a definition's literal values (with a
check that knows references), a run's input, an integration's credentials — and returns the
problems keyed as the caller's API names them (`tasks.<task>.body.<field>`, `<task>.<field>`,
`credentials.<field>`, `body.<field>`). `ensure_valid` raises them as `config.errors.InvalidInput`.
The JSON Schema shown in the catalog, the endpoint view and OpenAPI comes from the same specs
(`FieldSpec.json_schema`).

A field's `type` is one of: string, integer, number, boolean, object, array, any, expression
(a JMESPath expression, compiled to check it), string_or_list (a string or a list of strings),
headers (HTTP response headers: names to string values, framing and hop-by-hop headers refused,
see `headers.py`).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from jmespath.exceptions import JMESPathError

from config.errors import InvalidInput
from tasks_catalog.expressions import HARD_MAX_LENGTH, compile_expression
from tasks_catalog.headers import header_problems

FIELD_TYPES = {
    "string", "integer", "number", "boolean", "object", "array", "any", "expression",
    "string_or_list", "headers",
}

_JSON_SCHEMA_TYPES: dict[str, dict[str, Any]] = {
    "string": {"type": "string"},
    "expression": {"type": "string", "description": "a JMESPath expression"},
    "integer": {"type": "integer"},
    "number": {"type": "number"},
    "boolean": {"type": "boolean"},
    "object": {"type": "object"},
    "array": {"type": "array"},
    "any": {},
    "string_or_list": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
    "headers": {"type": "object", "additionalProperties": {"type": "string"}},
}

_EXAMPLES: dict[str, Any] = {
    "string": "text",
    "expression": "@",
    "integer": 1,
    "number": 1,
    "boolean": True,
    "object": {},
    "array": [],
    "any": {},
    "string_or_list": "someone@example.com",
    "headers": {},
}

NO_DEFAULT = None


@dataclass(frozen=True)
class FieldSpec:
    """One field: its name, JSON type, whether it is required, and constraints.

    `secret` and `destination` describe credentials (a secret is encrypted at rest and never
    shown; a destination decides where the secrets are sent); `allow_blank` and `allow_nul` refuse
    the empty string and the NUL character (which PostgreSQL's jsonb cannot store).
    """

    name: str
    type: str
    required: bool = False
    description: str = ""
    default: Any = NO_DEFAULT
    min_length: int | None = None
    max_length: int | None = None
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[Any, ...] | None = None
    items: str | None = None  # the type of an array's items
    example: Any = None
    secret: bool = False
    destination: bool = False
    app: bool = False  # a credential of the builder's provider app, not of one account
    allow_blank: bool = True
    allow_nul: bool = True

    def __post_init__(self) -> None:
        if self.type not in FIELD_TYPES:
            raise ValueError(f"field {self.name!r}: unknown type {self.type!r}")

    def describe(self) -> dict[str, Any]:
        """Return the public description of the field (for the catalog API).

        The flags past `example` appear only when they differ from their defaults.
        """
        data = {
            k: v for k, v in asdict(self).items()
            if v is not None and k != "example" and not (k in _FLAGS and v == _FLAGS[k])
        }
        data["default"] = self.default
        # The value example requests use (the endpoint's body, the canvas's placeholders).
        data["example"] = self.example_value()
        if self.choices is not None:
            data["choices"] = list(self.choices)
        return data

    def json_schema(self) -> dict[str, Any]:
        """Return a JSON Schema for a value of this field."""
        schema = dict(_JSON_SCHEMA_TYPES[self.type])
        if self.description:
            schema["description"] = self.description
        if self.min_length is not None:
            schema["minLength"] = self.min_length
        if self.max_length is not None:
            schema["maxLength"] = self.max_length
        if self.minimum is not None:
            schema["minimum"] = self.minimum
        if self.maximum is not None:
            schema["maximum"] = self.maximum
        if self.choices is not None:
            schema["enum"] = list(self.choices)
        if self.type == "array" and self.items:
            schema["items"] = _JSON_SCHEMA_TYPES[self.items]
        if not self.allow_blank and self.type == "string" and self.min_length is None:
            schema["minLength"] = 1
        if self.secret:
            schema["writeOnly"] = True
        return schema

    def example_value(self) -> Any:
        """Return a plausible value of this field, for example requests."""
        if self.example is not None:
            return self.example
        if self.choices:
            return self.choices[0]
        if self.default is not None:
            return self.default
        if self.type == "array" and self.items:
            return [_EXAMPLES[self.items]]
        if self.minimum is not None and self.type in {"integer", "number"}:
            return self.minimum
        return _EXAMPLES[self.type]


def type_ok(kind: str, value: Any) -> bool:
    if kind == "any":
        return True
    if kind in {"string", "expression"}:
        return isinstance(value, str)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind in {"object", "headers"}:
        return isinstance(value, dict)
    if kind == "array":
        return isinstance(value, list)
    if kind == "string_or_list":
        return isinstance(value, str) or (
            isinstance(value, list) and all(isinstance(item, str) for item in value)
        )
    return False


_TYPE_NAMES = {
    "string": "a string", "expression": "a JMESPath expression string", "integer": "an integer",
    "number": "a number", "boolean": "a boolean", "object": "an object", "array": "an array",
    "string_or_list": "a string or a list of strings",
    "headers": "an object of header names to string values",
}


def check_value(spec: FieldSpec, value: Any) -> list[str]:
    """Return the problems of a concrete `value` for `spec` (empty when it is valid)."""
    if not type_ok(spec.type, value):
        return [f"Must be {_TYPE_NAMES[spec.type]}, got {type(value).__name__ if value is not None else 'null'}."]
    problems: list[str] = []
    if isinstance(value, str) and not spec.allow_blank and value == "":
        return ["This field may not be blank."]
    if isinstance(value, str) and not spec.allow_nul and "\x00" in value:
        problems.append("Must not contain the NUL character.")
    if spec.type == "expression" and (spec.max_length is None or len(value) <= spec.max_length):
        try:
            compile_expression(value, max_length=spec.max_length or HARD_MAX_LENGTH)
        except JMESPathError as exc:
            problems.append(f"Not a valid JMESPath expression: {str(exc).splitlines()[0]}")
    if spec.type == "headers":
        problems.extend(header_problems(value))
    if spec.type == "array" and spec.items:
        for index, item in enumerate(value):
            if not type_ok(spec.items, item):
                problems.append(f"Item {index} must be {_TYPE_NAMES[spec.items]}.")
    if spec.min_length is not None and len(value) < spec.min_length:
        problems.append(f"Must be at least {spec.min_length} characters long." if isinstance(value, str) else f"Must have at least {spec.min_length} items.")
    if spec.max_length is not None and len(value) > spec.max_length:
        problems.append(f"Must be at most {spec.max_length} characters long." if isinstance(value, str) else f"Must have at most {spec.max_length} items.")
    if spec.minimum is not None and value < spec.minimum:
        problems.append(f"Must be at least {spec.minimum:g}.")
    if spec.maximum is not None and value > spec.maximum:
        problems.append(f"Must be at most {spec.maximum:g}.")
    if spec.choices is not None and value not in spec.choices:
        problems.append(f"Must be one of: {', '.join(map(str, spec.choices))}.")
    return problems


_FLAGS = {f.name: f.default for f in fields(FieldSpec) if f.name in {"secret", "destination", "app", "allow_blank", "allow_nul"}}

REQUIRED = "This field is required."


def validate(
    specs: Iterable[FieldSpec],
    values: Mapping[str, Any],
    *,
    prefix: str = "",
    unknown: str = "Unknown field.",
    partial: bool = False,
    null_is_missing: bool = True,
    check: Callable[[FieldSpec, Any], list[str]] = check_value,
) -> dict[str, list[str]]:
    """Check `values` against `specs`; return the problems keyed `<prefix><field>` (empty: valid).

    - a key no spec names: `unknown`;
    - a required field missing (or null, with `null_is_missing`): "This field is required.",
      unless `partial` (a PATCH keeps stored values; a definition leaves blanks);
    - any other value: what `check(spec, value)` finds (`check_value` by default; the
      definition's check also knows references and templates).
    """
    by_name = {spec.name: spec for spec in specs}
    problems: dict[str, list[str]] = {}
    for name in values:
        if name not in by_name:
            problems[f"{prefix}{name}"] = [unknown]
    for spec in by_name.values():
        missing = spec.name not in values or (null_is_missing and values[spec.name] is None)
        if missing:
            if spec.required and not partial:
                problems[f"{prefix}{spec.name}"] = [REQUIRED]
            continue
        found = check(spec, values[spec.name])
        if found:
            problems[f"{prefix}{spec.name}"] = found
    return problems


def ensure_valid(specs: Iterable[FieldSpec], values: Mapping[str, Any], **options: Any) -> None:
    """`validate`, raising InvalidInput with the problems as its details."""
    problems = validate(specs, values, **options)
    if problems:
        raise InvalidInput(details=problems)
