"""Parsed and compiled versions, cached per process.

A version never changes once written, so its parsed definition, plan and per-task field
defaults are computed once per process and reused by every run and every task of every
session: the hot paths (the run endpoint, the executor) never re-validate a definition.

The compiled form also says where each task runs. A task of a `pure` type (`TaskType.pure`:
transform, condition, response, fail) is *fused*: it never goes through the broker but runs
where it becomes ready — in the process that takes the call when it depends only on other
fused tasks (so a session of pure tasks needs no worker at all), else in the worker step that
ends its last predecessor. `worker_plan` is the plan of the remaining tasks: what is sent to
Celery.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from interactions.engine.canvas import Plan, Series, Step, chord_headers, compile_plan, restrict
from interactions.engine.definition import STORED, Definition, parse_definition
from interactions.engine.execution import referenced_tasks
from interactions.engine.graph import topological_order
from tasks_catalog.registry import find_task_type, task_types


@dataclass(frozen=True)
class CompiledVersion:
    definition: Definition
    plan: Plan  # every task, as Celery would order them
    defaults: dict[str, dict[str, Any]]  # task -> {field: default}
    needs: dict[str, frozenset[str]]  # task -> tasks whose records it reads (preds + refs)
    fused: frozenset[str]  # tasks of pure types: run inline, never through the broker
    at_call: frozenset[str]  # fused tasks with only fused ancestors: run in the calling process
    dependants: dict[str, tuple[str, ...]]  # task -> the tasks that wait for it
    accepts: dict[str, str]  # task -> {predecessor: [statuses]} as JSON (for the claim's SQL)
    worker_plan: Plan | None  # the plan of the tasks that need a worker; None if none does
    order: tuple[str, ...]  # a topological order of the tasks
    # task -> the next link of its chain that its step may run itself (`chain_links`)
    follows: dict[str, str]

    def fused_dependants(self, names) -> set[str]:
        """The fused tasks that wait for any of `names`."""
        return {child for name in names for child in self.dependants[name] if child in self.fused}

    def hosts(self, name: str) -> list[str]:
        """The tasks whose step may be running `name` (the links before it, `follows`)."""
        before = {link: host for host, link in self.follows.items()}
        found = []
        while name in before:
            name = before[name]
            found.append(name)
        return found

    def runs_in(self, name: str) -> str:
        """Where a task runs: `worker` (a Celery step), `worker (fused)` or `call`."""
        if name not in self.fused:
            return "worker"
        return "call" if name in self.at_call else "worker (fused)"


def _compile(tasks: dict[str, Any]) -> CompiledVersion:
    definition = parse_definition(tasks, task_type=find_task_type, integrations=None, limits=STORED)
    defaults = {
        name: {spec.name: spec.default for spec in task_types.get(task.type).fields}
        for name, task in definition.tasks.items()
    }
    needs = {
        name: frozenset(task.execute_after) | referenced_tasks(task)
        for name, task in definition.tasks.items()
    }
    dependants: dict[str, list[str]] = {name: [] for name in definition.tasks}
    for name, task in sorted(definition.tasks.items()):
        for pred in task.execute_after:
            dependants[pred].append(name)
    fused = frozenset(name for name, task in definition.tasks.items() if task_types.get(task.type).pure)
    at_call: set[str] = set()
    order = topological_order(definition.predecessors())
    for name in order:
        if name in fused and all(pred in at_call for pred in definition.tasks[name].execute_after):
            at_call.add(name)
    plan = compile_plan(definition.predecessors())
    worker = restrict(plan, set(definition.tasks) - fused)
    return CompiledVersion(
        definition=definition, plan=plan, defaults=defaults, needs=needs, fused=fused,
        at_call=frozenset(at_call), dependants={name: tuple(c) for name, c in dependants.items()},
        accepts={
            name: json.dumps({pred: list(accepted) for pred, accepted in task.execute_after.items()})
            for name, task in definition.tasks.items()
        },
        worker_plan=worker, order=tuple(order), follows=chain_links(definition, worker),
    )


def chain_links(definition: Definition, plan: Plan | None) -> dict[str, str]:
    """{task: the next link} for the consecutive steps of a chain that one worker step may run
    one after the other instead of a broker hop between them (docs/execution.md, "Chains run in
    one step").

    Both are single steps, one right after the other in a series of the plan of the tasks that
    need a worker, on the same queue, of the same `slow` kind (the step's slot serves both),
    neither a timer, and the next is not one whose result a chord waits for (its own message
    counts the chord's parts).
    """
    if plan is None:
        return {}
    headers = chord_headers(plan)
    links: dict[str, str] = {}

    def kind(name: str):
        task_type = task_types.get(definition.tasks[name].type)
        return None if task_type.timer else (str(task_type.queue), task_type.slow)

    def walk(node) -> None:
        if isinstance(node, Step):
            return
        for part in node.parts:
            walk(part)
        if isinstance(node, Series):
            for first, then in zip(node.parts, node.parts[1:]):
                if (isinstance(first, Step) and isinstance(then, Step) and then.name not in headers
                        and kind(first.name) is not None and kind(first.name) == kind(then.name)):
                    links[first.name] = then.name

    walk(plan.root)
    return links


_cache: dict[UUID | str, CompiledVersion] = {}
_CACHE_SIZE = 2048


def compiled_version(version_id: UUID | str, tasks: dict[str, Any] | None = None) -> CompiledVersion:
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
