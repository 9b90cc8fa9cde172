"""Parsed and compiled versions, cached per process.

A version never changes once written, so its parsed definition, plan and per-task field
defaults are computed once per process and reused by every run and every task of every
session: the hot paths (the run endpoint, the executor) never re-validate a definition.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from interactions.engine.canvas import Plan, compile_plan
from interactions.engine.definition import Definition, parse_definition
from interactions.engine.execution import referenced_tasks
from tasks_catalog.registry import find_task_type


@dataclass(frozen=True)
class CompiledVersion:
    definition: Definition
    plan: Plan
    defaults: dict[str, dict[str, Any]]  # task -> {field: default}
    needs: dict[str, frozenset[str]]  # task -> tasks whose records it reads (preds + refs)
    sinks: frozenset[str]  # tasks no other task waits for


def _compile(tasks: dict[str, Any]) -> CompiledVersion:
    definition = parse_definition(tasks, task_type=find_task_type, integrations=None)
    defaults = {
        name: {spec.name: spec.default for spec in find_task_type(task.type).fields}
        for name, task in definition.tasks.items()
    }
    needs = {
        name: frozenset(task.execute_after) | referenced_tasks(task)
        for name, task in definition.tasks.items()
    }
    waited_for = {pred for task in definition.tasks.values() for pred in task.execute_after}
    sinks = frozenset(definition.tasks) - waited_for
    return CompiledVersion(definition, compile_plan(definition.predecessors()), defaults, needs, sinks)


_cache: dict[UUID, CompiledVersion] = {}
_CACHE_SIZE = 2048


def compiled_version(version_id: UUID, tasks: dict[str, Any] | None = None) -> CompiledVersion:
    """Return the compiled form of a stored version (cached by its id: versions are immutable).

    Without `tasks`, a cache miss reads the version's definition from the database: callers on
    the hot path need not load the definition's JSON for every task.
    """
    found = _cache.get(version_id)
    if found is None:
        if tasks is None:
            from interactions.models import InteractionVersion

            tasks = InteractionVersion.objects.values_list("tasks", flat=True).get(pk=version_id)
        if len(_cache) >= _CACHE_SIZE:
            _cache.pop(next(iter(_cache)))  # drop the oldest entry
        found = _cache[version_id] = _compile(tasks)
    return found
