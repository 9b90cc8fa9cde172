"""The rules of a session's execution, as pure functions (SPEC §3). No Django, no ORM.

- `readiness`: may a task run, given its predecessors' terminal statuses?
- `resolve_body`: fill blanks from the caller's input and references from ancestor records.
- `session_outcome`: the session's status (failures handled or not) and its result.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jmespath

from interactions.engine.definition import Definition, TaskSpec
from interactions.engine.references import (
    REF,
    TEMPLATE,
    TEMPLATE_PLACEHOLDER,
    find_references,
    parse_reference,
)

COMPLETED, FAILED, SKIPPED, CANCELLED = "completed", "failed", "skipped", "cancelled"
TERMINAL = frozenset({COMPLETED, FAILED, SKIPPED, CANCELLED})


@dataclass(frozen=True)
class Record:
    """What a finished task left behind, as references see it."""

    status: str
    output: Any = None
    error: str | None = None


def readiness(spec: TaskSpec, statuses: Mapping[str, str]) -> bool:
    """Return True if every predecessor ended in a status its edge accepts.

    Statuses listed for one predecessor are OR-ed, predecessors are AND-ed; a skipped or
    cancelled predecessor never satisfies an edge.
    """
    return all(statuses.get(pred) in accepted for pred, accepted in spec.execute_after.items())


def _lookup(reference: str, records: Mapping[str, Record]) -> Any:
    ref = parse_reference(reference)
    record = records.get(ref.task)
    if record is None:
        return None
    if ref.path in ("error", "status"):
        return getattr(record, ref.path)
    if not ref.path:
        return record.output
    return jmespath.search(ref.path, record.output)


def _render(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def resolve_value(value: Any, records: Mapping[str, Record]) -> Any:
    """Replace every `$ref` / `$template` inside `value` with what it points to."""
    if isinstance(value, dict):
        if len(value) == 1 and REF in value:
            return _lookup(value[REF], records)
        if len(value) == 1 and TEMPLATE in value:
            return TEMPLATE_PLACEHOLDER.sub(lambda m: _render(_lookup(m.group(1), records)), value[TEMPLATE])
        return {key: resolve_value(item, records) for key, item in value.items()}
    if isinstance(value, list):
        return [resolve_value(item, records) for item in value]
    return value


def resolve_body(
    spec: TaskSpec,
    field_defaults: Mapping[str, Any],
    caller_input: Mapping[str, Any],
    records: Mapping[str, Record],
) -> dict[str, Any]:
    """Return the task's concrete body: literals, then blanks from the caller, then references.

    `field_defaults` maps each of the type's field names to its default; a field that is
    neither set, given nor defaulted is None (the type's check then names it if required).
    """
    given = caller_input.get(spec.name) or {}
    body: dict[str, Any] = {}
    for name, default in field_defaults.items():
        if name in spec.body and spec.body[name] is not None:
            body[name] = resolve_value(spec.body[name], records)
        elif given.get(name) is not None:
            body[name] = given[name]
        else:
            body[name] = default
    return body


def settle(
    definition: Definition,
    *,
    order: tuple[str, ...],
    inline: frozenset[str],
    records: Mapping[str, Record],
    run: Callable[[str, Mapping[str, Record]], Record],
) -> dict[str, Record]:
    """Decide every task that needs no worker, given the terminal `records` so far.

    Walking the tasks in topological `order`: a task whose predecessors have all ended
    without satisfying its edges is skipped (skipping propagates); an `inline` task whose
    predecessors satisfy its edges runs now through `run(name, records)`. Returns the new
    records, in order; the others wait for a worker.
    """
    known = dict(records)
    new: dict[str, Record] = {}
    for name in order:
        if name in known:
            continue
        spec = definition.tasks[name]
        statuses = {pred: known[pred].status for pred in spec.execute_after if pred in known}
        if len(statuses) < len(spec.execute_after):
            continue  # a predecessor has not ended yet
        if not readiness(spec, statuses):
            new[name] = known[name] = Record(SKIPPED)
        elif name in inline:
            new[name] = known[name] = run(name, known)
    return new


def referenced_tasks(spec: TaskSpec) -> set[str]:
    """Return the names of the tasks whose records `spec`'s body refers to."""
    return {ref.task for value in spec.body.values() for ref in find_references(value)}


@dataclass(frozen=True)
class Outcome:
    status: str  # completed | failed
    result: Any
    unhandled: tuple[str, ...]  # failed tasks whose failure no handler took


def session_outcome(definition: Definition, records: Mapping[str, Record]) -> Outcome:
    """Compute the session's status and result from its tasks' terminal records.

    A failed task is handled when one of its dependants whose edge from it accepts `failed`
    was not skipped (it ran). The result is the output of a completed `response` task if there
    is one (the first by name), else the outputs of the completed tasks that have no dependants.
    """
    dependants: dict[str, list[str]] = {name: [] for name in definition.tasks}
    for name, spec in definition.tasks.items():
        for pred in spec.execute_after:
            dependants[pred].append(name)

    unhandled = []
    for name, record in records.items():
        if record.status != FAILED:
            continue
        handlers = [
            child for child in dependants.get(name, [])
            if FAILED in definition.tasks[child].execute_after[name]
            and records.get(child, Record(SKIPPED)).status not in (SKIPPED, CANCELLED)
        ]
        if not handlers:
            unhandled.append(name)

    responses = sorted(
        name for name, spec in definition.tasks.items()
        if spec.type == "response" and records.get(name, Record(SKIPPED)).status == COMPLETED
    )
    if responses:
        result: Any = records[responses[0]].output.get("body")
    else:
        result = {
            name: records[name].output
            for name in sorted(definition.tasks)
            if not dependants[name] and name in records and records[name].status == COMPLETED
        }
    return Outcome(status=FAILED if unhandled else COMPLETED, result=result, unhandled=tuple(sorted(unhandled)))
