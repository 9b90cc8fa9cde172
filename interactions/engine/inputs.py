"""The caller's input: the blanks of a definition, as an example, a JSON Schema and a check.

A run's body is `{"<task>": {"<field>": value}}`. Blanks of required fields must be given;
blanks of optional fields (set to `null` in the definition) may be left out, and the field's
default is used. Pure: no Django.
"""
from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Any

from interactions.engine.definition import Blank
from tasks_catalog.fields import validate


def _by_task(blanks: Iterable[Blank]) -> dict[str, list[Blank]]:
    grouped: dict[str, list[Blank]] = {}
    for blank in blanks:
        grouped.setdefault(blank.task, []).append(blank)
    return grouped


def example_input(blanks: Iterable[Blank]) -> dict[str, dict[str, Any]]:
    """Return an example request body that fills every blank."""
    return {
        task: {blank.field.name: blank.field.example_value() for blank in items}
        for task, items in _by_task(blanks).items()
    }


def input_schema(blanks: Iterable[Blank]) -> dict[str, Any]:
    """Return the JSON Schema of a run's request body."""
    properties: dict[str, Any] = {}
    required_tasks: list[str] = []
    for task, items in _by_task(blanks).items():
        required = [b.field.name for b in items if b.field.required]
        properties[task] = {
            "type": "object",
            "properties": {b.field.name: b.field.json_schema() for b in items},
            "required": required,
            "additionalProperties": False,
        }
        if required:
            required_tasks.append(task)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": properties,
        "required": required_tasks,
        "additionalProperties": False,
    }


def check_input(blanks: Iterable[Blank], data: Any, *, tasks: Collection[str] = ()) -> dict[str, list[str]]:
    """Return the problems of a run's body, keyed `<task>.<field>` (empty when valid).

    `tasks` (every task of the definition) tells a task that does not exist from one with no
    blanks; both are problems keyed by the name the caller sent.
    """
    if not isinstance(data, dict):
        return {"non_field_errors": ["The body must be an object of {task: {field: value}}."]}
    grouped = _by_task(blanks)
    problems: dict[str, list[str]] = {}
    for task, values in data.items():
        if task not in grouped:
            problems[task] = [
                f"Task {task!r} has no blank fields to fill in." if task in tasks
                else f"Unknown task {task!r}: the interaction has no task of that name."
            ]
        elif not isinstance(values, dict):
            problems[task] = ["Must be an object of {field: value}."]
    for task, items in grouped.items():
        values = data.get(task)
        problems.update(validate(
            [blank.field for blank in items], values if isinstance(values, dict) else {},
            prefix=f"{task}.", unknown="Unknown field: not a blank of this task.",
        ))
    return problems
