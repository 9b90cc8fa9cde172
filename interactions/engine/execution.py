"""The rules of a session's execution, as pure functions (SPEC §3). No Django, no ORM.

- `readiness`: may a task run, given its predecessors' terminal statuses?
- `resolve_body`: fill blanks from the caller's input and references from ancestor records,
  within `ResolveLimits` (reference paths and templates cannot amplify a value: see
  `tasks_catalog/expressions.py`).
- `session_outcome`: the session's status (failures handled or not) and its result.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from config.jsonsize import BoundedJsonError, check_bounded, encode_bounded
from interactions.engine.definition import Definition, TaskSpec
from interactions.engine.references import (
    REF,
    TEMPLATE,
    TEMPLATE_PLACEHOLDER,
    find_references,
    parse_reference,
)
from tasks_catalog.expressions import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_STEPS,
    Budget,
    ExpressionTooCostly,
    search,
)

from interactions.statuses import CANCELLED, COMPLETED, FAILED, SKIPPED



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


@dataclass(frozen=True)
class ResolveLimits:
    """What resolving one task's body may cost (defaults: the settings' defaults).

    `max_steps` is the JMESPath budget shared by all the body's references, `max_text_bytes`
    the longest rendered template (and `join`/`to_string` result), `max_body_bytes` the
    largest resolved body as JSON, `max_depth` its deepest nesting, `timeout` seconds of
    wall clock for the whole resolution.
    """

    max_steps: int = DEFAULT_MAX_STEPS
    max_text_bytes: int = DEFAULT_MAX_BYTES
    max_body_bytes: int = 16 * 1024 * 1024
    max_depth: int = 64
    timeout: float | None = None

    def budget(self) -> Budget:
        deadline = time.monotonic() + self.timeout if self.timeout else None
        return Budget(max_steps=self.max_steps, max_bytes=self.max_text_bytes, deadline=deadline)


def _lookup(reference: str, records: Mapping[str, Record], budget: Budget) -> Any:
    ref = parse_reference(reference)
    record = records.get(ref.task)
    if record is None:
        return None
    if ref.path in ("error", "status"):
        return getattr(record, ref.path)
    if not ref.path:
        return record.output
    return search(ref.path, record.output, max_length=len(ref.path), budget=budget)


def _render(value: Any, budget: Budget) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    try:
        return encode_bounded(value, budget.max_bytes, sort_keys=True)
    except BoundedJsonError as exc:
        raise ExpressionTooCostly(f"a template's value is {exc}") from None


def _render_template(template: str, records: Mapping[str, Record], budget: Budget) -> str:
    pieces: list[str] = []
    size = 0
    position = 0
    for match in TEMPLATE_PLACEHOLDER.finditer(template):
        text = _render(_lookup(match.group(1), records, budget), budget)
        pieces += [template[position:match.start()], text]
        size += match.start() - position + len(text)
        position = match.end()
        if size > budget.max_bytes:
            raise ExpressionTooCostly(f"the rendered template is longer than {budget.max_bytes} characters")
    pieces.append(template[position:])
    return "".join(pieces)


def resolve_value(value: Any, records: Mapping[str, Record], budget: Budget | None = None) -> Any:
    """Replace every `$ref` / `$template` inside `value` with what it points to.

    Raises ExpressionTooCostly (a JMESPathError) when `budget` runs out.
    """
    budget = budget or Budget()
    if isinstance(value, dict):
        if len(value) == 1 and REF in value:
            return _lookup(value[REF], records, budget)
        if len(value) == 1 and TEMPLATE in value:
            return _render_template(value[TEMPLATE], records, budget)
        return {key: resolve_value(item, records, budget) for key, item in value.items()}
    if isinstance(value, list):
        return [resolve_value(item, records, budget) for item in value]
    return value


def resolve_body(
    spec: TaskSpec,
    field_defaults: Mapping[str, Any],
    caller_input: Mapping[str, Any],
    records: Mapping[str, Record],
    *,
    limits: ResolveLimits | None = None,
) -> dict[str, Any]:
    """Return the task's concrete body: literals, then blanks from the caller, then references.

    `field_defaults` maps each of the type's field names to its default; a field that is
    neither set, given nor defaulted is None (the type's check then names it if required).
    Raises ExpressionTooCostly (a JMESPathError) when resolving costs more than `limits`
    allow or makes a body larger or deeper than they allow: a reference may share one value
    many times (`[@,@]`), which every consumer of the body would pay in full.
    """
    limits = limits or ResolveLimits()
    budget = limits.budget()
    given = caller_input.get(spec.name) or {}
    body: dict[str, Any] = {}
    for name, default in field_defaults.items():
        if name in spec.body and spec.body[name] is not None:
            body[name] = resolve_value(spec.body[name], records, budget)
        elif given.get(name) is not None:
            body[name] = given[name]
        else:
            body[name] = default
    try:
        check_bounded(body, limits.max_body_bytes, max_depth=limits.max_depth + 1)
    except BoundedJsonError as exc:
        raise ExpressionTooCostly(f"the task's resolved body is {exc}") from None
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
        if spec.replies and records.get(name, Record(SKIPPED)).status == COMPLETED
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
