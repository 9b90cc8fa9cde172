"""The interaction definition in the OpenAPI document, typed from the task types' field specs.

`tasks` maps task names to tasks; a task is one of the registered task types (`oneOf` with a
`discriminator` on `type`), and each type's `body` lists its fields with the JSON Schema of a
literal value (`FieldSpec.json_schema()`, the same specs that validate a definition), or `null`
(a blank the caller fills in), or a `{"$ref": "task.path"}`, or — for fields that take text — a
`{"$template": "… {{ task.path }} …"}`. A new task type appears here as soon as it is registered.

What JSON Schema cannot say is checked when the definition is saved and answered with a 400
naming the task and field: that `execute_after` and `$ref` name tasks that exist and precede
the task, that the graph has no cycle, that an integration is the caller's and of the right
provider, that an expression parses (docs/api.md).
"""
from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from drf_spectacular.plumbing import ResolvedComponent

from interactions.engine.definition import EDGE_STATUSES, STRING_TYPES
from interactions.engine.references import TASK_NAME
from tasks_catalog.base import TaskType
from tasks_catalog.fields import FieldSpec
from tasks_catalog.registry import task_types

COMPONENT_PREFIX = "#/components/schemas/"


def _component(auto_schema, name: str, schema: dict[str, Any]) -> dict[str, str]:
    component = ResolvedComponent(name=name, type=ResolvedComponent.SCHEMA, object=name, schema=schema)
    auto_schema.registry.register_on_missing(component)
    return component.ref


def reference_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "The value of a preceding task's record: `task` (its output), `task.<JMESPath "
        "into the output>`, `task.error` or `task.status`. The task must be an ancestor (through "
        "`execute_after`).",
        "required": ["$ref"],
        "minProperties": 1,
        "maxProperties": 1,
        "additionalProperties": {"type": "string", "minLength": 1,
                                 "maxLength": settings.JUNCTION_MAX_EXPRESSION_LENGTH},
    }


def template_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "Text with references interpolated: `\"Order {{ fetch.body.id }} shipped\"`.",
        "required": ["$template"],
        "minProperties": 1,
        "maxProperties": 1,
        "additionalProperties": {"type": "string", "maxLength": settings.JUNCTION_MAX_TEMPLATE_LENGTH},
    }


def field_value_schema(spec: FieldSpec, *, ref: dict[str, str], template: dict[str, str]) -> dict[str, Any]:
    """A body field's value in a definition: a literal, a blank (null), a $ref or a $template."""
    options: list[dict[str, Any]] = [spec.json_schema(), {"type": "null"}, ref]
    if spec.type in STRING_TYPES:
        options.append(template)
    schema: dict[str, Any] = {"anyOf": options}
    required = " Required: a blank when left out." if spec.required else ""
    schema["description"] = (spec.description + " " if spec.description else "") + (
        f"`null`: a blank the caller fills in.{required}"
    )
    if spec.default is not None:
        schema["default"] = spec.default
    return schema


def task_schema(task_type: TaskType, *, ref: dict[str, str], template: dict[str, str]) -> dict[str, Any]:
    """The JSON Schema of one task of `task_type` in a definition."""
    integration: dict[str, Any] = (
        {"type": "string", "format": "uuid", "description": f"One of your integrations of provider `{task_type.provider}`."}
        if task_type.provider else
        {"type": "null", "description": "This task type takes no integration."}
    )
    statuses = {"type": "string", "enum": list(EDGE_STATUSES)}
    return {
        "type": "object",
        "title": task_type.name,
        "description": task_type.description,
        "required": ["type", "integration"] if task_type.provider else ["type"],
        "additionalProperties": False,
        "properties": {
            "type": {"type": "string", "const": task_type.key},
            "integration": integration,
            "body": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    spec.name: field_value_schema(spec, ref=ref, template=template) for spec in task_type.fields
                },
            },
            "execute_after": {
                "type": ["object", "null"],
                "description": "The tasks this one waits for, each with the statuses it accepts "
                "(OR-ed per task; different tasks are AND-ed).",
                "propertyNames": {"pattern": TASK_NAME.pattern},
                "additionalProperties": {"anyOf": [statuses, {"type": "array", "minItems": 1, "items": statuses}]},
            },
            "retries": {"type": "integer", "minimum": 0, "maximum": settings.JUNCTION_MAX_RETRIES, "default": 0},
            "timeout": {
                "type": ["number", "null"], "exclusiveMinimum": 0, "maximum": settings.JUNCTION_MAX_TASK_TIMEOUT,
                "description": "Seconds (default JUNCTION_DEFAULT_TASK_TIMEOUT).",
            },
        },
    }


def definition_schema(auto_schema) -> dict[str, Any]:
    """Register the definition's components and return the schema of `tasks`."""
    ref = _component(auto_schema, "Reference", reference_schema())
    template = _component(auto_schema, "Template", template_schema())
    mapping: dict[str, str] = {}
    for task_type in sorted(task_types, key=lambda t: t.key):
        name = "Task_" + task_type.key
        mapping[task_type.key] = _component(auto_schema, name, task_schema(task_type, ref=ref, template=template))["$ref"]
    task = _component(auto_schema, "Task", {
        "oneOf": [{"$ref": target} for target in mapping.values()],
        "discriminator": {"propertyName": "type", "mapping": mapping},
    })
    return {
        "type": "object",
        "description": "The tasks, by name: a DAG wired with `execute_after`.",
        "minProperties": 1,
        "maxProperties": settings.JUNCTION_MAX_TASKS,
        "propertyNames": {"pattern": TASK_NAME.pattern},
        "additionalProperties": task,
    }


class DefinitionFieldExtension(OpenApiSerializerFieldExtension):
    target_class = "interactions.serializers.DefinitionField"

    def map_serializer_field(self, auto_schema, direction):
        return definition_schema(auto_schema)
