"""Parse and validate an interaction's definition (its `tasks`). Pure: no Django, no ORM.

The caller passes what needs the database or the registry as plain arguments: a lookup of
task types and a map of the user's integrations to their providers. Every problem is
collected under a dotted path (`tasks.<task>.body.<field>`, `tasks.<task>.execute_after`,
`tasks` for whole-graph problems such as a cycle) so that the API can name them all at once.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from config.jsonsize import JsonTooDeep, json_depth
from interactions.engine.graph import ancestors, find_cycle
from interactions.engine.references import (
    REF,
    TASK_NAME,
    TEMPLATE,
    TEMPLATE_PLACEHOLDER,
    ReferenceError_,
    find_references,
    is_reference,
)
from interactions.statuses import EDGE_STATUSES
from tasks_catalog.base import TaskType
from tasks_catalog.fields import FieldSpec, check_value, type_ok, validate
from tasks_catalog.headers import header_problems

TASK_KEYS = {"type", "integration", "body", "execute_after", "retries", "timeout"}
STRING_TYPES = {"string", "expression", "string_or_list", "any"}


class DefinitionInvalid(Exception):
    """The definition has problems; `errors` maps dotted paths to messages."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__("; ".join(f"{k}: {' '.join(v)}" for k, v in errors.items()))
        self.errors = errors


@dataclass(frozen=True)
class Limits:
    max_tasks: int = 100
    max_retries: int = 10
    max_timeout: float = 600
    max_depth: int = 64  # nesting of a field's value
    max_expression_length: int = 1024  # a `$ref` path
    max_template_length: int = 16384
    max_template_placeholders: int = 64


# For a definition validated when it was saved (a stored version): the settings' hard maxima,
# so that lowering a setting later never makes a stored version fail to compile, which would
# leave its sessions unable to run.
STORED = Limits(
    max_tasks=1000, max_retries=100, max_timeout=86400, max_depth=256, max_expression_length=16384,
    max_template_length=1024 * 1024, max_template_placeholders=1024,
)


@dataclass(frozen=True)
class TaskSpec:
    name: str
    type: str
    body: dict[str, Any]
    integration: str | None = None
    execute_after: dict[str, tuple[str, ...]] = field(default_factory=dict)
    retries: int = 0
    timeout: float | None = None
    replies: bool = False  # its type's `TaskType.replies`: its output is the session's answer


@dataclass(frozen=True)
class Blank:
    """A field the caller fills in: `null` in the body, or a required field left out."""

    task: str
    field: FieldSpec


@dataclass(frozen=True)
class Definition:
    tasks: dict[str, TaskSpec]
    blanks: tuple[Blank, ...]

    def predecessors(self) -> dict[str, frozenset[str]]:
        return {name: frozenset(spec.execute_after) for name, spec in self.tasks.items()}


class _Errors:
    def __init__(self) -> None:
        self.items: dict[str, list[str]] = {}

    def add(self, path: str, message: str) -> None:
        self.items.setdefault(path, []).append(message)


def _reference_problems(value: Any, limits: Limits) -> list[str]:
    """Return what makes the references inside `value` too costly to resolve."""
    problems: list[str] = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if len(item) == 1 and isinstance(item.get(REF), str) and len(item[REF]) > limits.max_expression_length:
                problems.append(f"A $ref path is longer than {limits.max_expression_length} characters.")
            elif len(item) == 1 and isinstance(item.get(TEMPLATE), str):
                text = item[TEMPLATE]
                if len(text) > limits.max_template_length:
                    problems.append(f"A $template is longer than {limits.max_template_length} characters.")
                elif len(TEMPLATE_PLACEHOLDER.findall(text)) > limits.max_template_placeholders:
                    problems.append(f"A $template has more than {limits.max_template_placeholders} placeholders.")
                elif any(len(p) > limits.max_expression_length for p in TEMPLATE_PLACEHOLDER.findall(text)):
                    problems.append(f"A $template's reference is longer than {limits.max_expression_length} characters.")
            else:
                stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return problems


def _check_body(
    name: str, task_type: TaskType, body: Any, errors: _Errors, limits: Limits
) -> tuple[dict[str, Any], list[Blank]]:
    path = f"tasks.{name}.body"
    if not isinstance(body, dict):
        errors.add(path, "Must be an object mapping field names to values.")
        return {}, []
    known = ", ".join(spec.name for spec in task_type.fields)
    problems = validate(
        task_type.fields, body, prefix=f"{path}.", partial=True,  # a missing field is a blank, not an error
        unknown=f"Unknown field for task type {task_type.key!r} (fields: {known}).",
        check=lambda spec, value: _literal_problems(spec, value, limits),
    )
    for key, messages in problems.items():
        for message in messages:
            errors.add(key, message)
    blanks = [
        Blank(name, spec) for spec in task_type.fields
        if (spec.name in body and body[spec.name] is None) or (spec.name not in body and spec.required)
    ]
    return body, blanks


def _literal_problems(spec: FieldSpec, value: Any, limits: Limits) -> list[str]:
    """The problems of a definition's value for a field: a literal, or one holding references."""
    try:
        json_depth(value, limits.max_depth)
    except JsonTooDeep:
        return [f"Nested deeper than {limits.max_depth} levels of arrays and objects."]
    costly = _reference_problems(value, limits)
    if costly:
        return costly
    try:
        refs = find_references(value)
    except ReferenceError_ as exc:
        return [str(exc)]
    if not refs and not is_reference(value):
        return check_value(spec, value)
    if is_reference(value) and TEMPLATE in value and spec.type not in STRING_TYPES:
        return [f"A $template makes a string, but this field must be {spec.type}."]
    if not is_reference(value) and not type_ok(spec.type, value):
        return [f"Must be {spec.type}."]
    if spec.type == "headers" and not is_reference(value):
        # Names are literal even when values are references: check what can be checked
        # now; the task type checks the resolved values when it runs.
        return header_problems(value, unresolved=is_reference)
    return []


def parse_definition(
    raw: Any,
    *,
    task_type: Callable[[str], TaskType | None],
    integrations: Mapping[str, str] | None,
    limits: Limits = Limits(),
    caller_integrations: bool = False,
) -> Definition:
    """Validate `raw` (the `tasks` object) and return it parsed; raise DefinitionInvalid.

    `task_type(key)` returns the type or None; `integrations` maps the ids of the user's
    integrations to their provider, or is None to skip that check (for a stored definition,
    checked when it was saved). With `caller_integrations` (an interaction end users may
    call), a task may leave its integration out: it uses the calling end user's own.
    """
    errors = _Errors()
    if not isinstance(raw, dict) or not raw:
        errors.add("tasks", "Must be a non-empty object mapping task names to tasks.")
        raise DefinitionInvalid(errors.items)
    if len(raw) > limits.max_tasks:
        errors.add("tasks", f"Too many tasks: {len(raw)} (the maximum is {limits.max_tasks}).")
        raise DefinitionInvalid(errors.items)
    try:
        # tasks > task > body > field: a field's own depth is checked (and named) below; this
        # keeps anything deeper from reaching the recursive walks at all.
        json_depth(raw, limits.max_depth + 4)
    except JsonTooDeep:
        errors.add("tasks", f"Nested deeper than {limits.max_depth} levels of arrays and objects.")
        raise DefinitionInvalid(errors.items) from None

    tasks: dict[str, TaskSpec] = {}
    blanks: list[Blank] = []
    for name, task in raw.items():
        path = f"tasks.{name}"
        if not TASK_NAME.match(name):
            errors.add(path, "A task name must start with a letter or _ and hold only letters, digits and _ (at most 64).")
            continue
        if not isinstance(task, dict):
            errors.add(path, "Must be an object with at least a 'type'.")
            continue
        for key in task:
            if key not in TASK_KEYS:
                errors.add(f"{path}.{key}", f"Unknown key (allowed: {', '.join(sorted(TASK_KEYS))}).")
        type_key = task.get("type")
        kind = task_type(type_key) if isinstance(type_key, str) else None
        if "type" not in task:
            errors.add(f"{path}.type", "This field is required.")
        elif kind is None:
            errors.add(f"{path}.type", f"Unknown task type {type_key!r}.")

        integration = task.get("integration")
        if kind is not None:
            if kind.provider is None and integration is not None:
                errors.add(f"{path}.integration", f"Task type {kind.key!r} takes no integration.")
            elif kind.provider is not None and integrations is not None:
                if integration is None and caller_integrations:
                    pass  # the calling end user's integration of that provider, at run time
                elif integration is None:
                    errors.add(f"{path}.integration", f"Task type {kind.key!r} needs an integration of provider {kind.provider!r} "
                               f"(it may be left out only when the interaction's access is not 'owner': "
                               f"then the calling end user's own is used).")
                elif str(integration) not in integrations:
                    errors.add(f"{path}.integration", f"Unknown integration {integration!r}.")
                elif integrations[str(integration)] != kind.provider:
                    errors.add(
                        f"{path}.integration",
                        f"Integration {integration!r} is of provider {integrations[str(integration)]!r}, "
                        f"task type {kind.key!r} needs {kind.provider!r}.",
                    )

        execute_after: dict[str, tuple[str, ...]] = {}
        edges = task.get("execute_after", {})
        if edges is None:
            edges = {}
        if not isinstance(edges, dict):
            errors.add(f"{path}.execute_after", "Must be an object mapping task names to lists of statuses.")
            edges = {}
        for pred, statuses in edges.items():
            epath = f"{path}.execute_after.{pred}"
            if pred not in raw:
                errors.add(epath, f"Unknown task {pred!r}.")
                continue
            if pred == name:
                errors.add(epath, "A task cannot wait for itself.")
                continue
            if isinstance(statuses, str):
                statuses = [statuses]
            if not isinstance(statuses, list) or not statuses or any(s not in EDGE_STATUSES for s in statuses):
                errors.add(epath, "Must be a non-empty list of statuses from: completed, failed.")
                continue
            execute_after[pred] = tuple(sorted(set(statuses)))

        retries = task.get("retries", 0)
        if not isinstance(retries, int) or isinstance(retries, bool) or not 0 <= retries <= limits.max_retries:
            errors.add(f"{path}.retries", f"Must be an integer from 0 to {limits.max_retries}.")
        timeout = task.get("timeout")
        if timeout is not None and (
            not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or not 0 < timeout <= limits.max_timeout
        ):
            errors.add(f"{path}.timeout", f"Must be a number of seconds above 0 and at most {limits.max_timeout:g}.")

        body: dict[str, Any] = {}
        if kind is not None:
            body, task_blanks = _check_body(name, kind, task.get("body", {}), errors, limits)
            blanks.extend(task_blanks)
        tasks[name] = TaskSpec(
            name=name, type=str(type_key), body=body,
            integration=str(integration) if integration is not None else None,
            execute_after=execute_after, retries=retries if isinstance(retries, int) else 0,
            timeout=timeout, replies=kind is not None and kind.replies,
        )

    predecessors = {name: set(spec.execute_after) for name, spec in tasks.items()}
    cycle = find_cycle(predecessors)
    if cycle:
        errors.add("tasks", f"The tasks form a cycle: {' -> '.join(cycle)}.")
    else:
        _check_references(tasks, ancestors(predecessors), errors)
    if errors.items:
        raise DefinitionInvalid(errors.items)
    return Definition(tasks=tasks, blanks=tuple(blanks))


def _check_references(tasks: dict[str, TaskSpec], ancestry: dict[str, frozenset[str]], errors: _Errors) -> None:
    for name, spec in tasks.items():
        for field_name, value in spec.body.items():
            try:
                refs = find_references(value)
            except ReferenceError_:
                continue  # malformed: already reported by _check_body
            for ref in refs:
                path = f"tasks.{name}.body.{field_name}"
                if ref.task not in tasks:
                    errors.add(path, f"Reference {ref.source!r} names unknown task {ref.task!r}.")
                elif ref.task not in ancestry[name]:
                    errors.add(
                        path,
                        f"Reference {ref.source!r}: task {ref.task!r} is not an ancestor of {name!r} "
                        f"(add it to execute_after, directly or through another task).",
                    )
