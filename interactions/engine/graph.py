"""Graph algorithms on a task DAG given as `{task: {predecessor, ...}}`. Pure: no Django."""
from __future__ import annotations

from collections.abc import Iterable, Mapping


def find_cycle(predecessors: Mapping[str, Iterable[str]]) -> list[str] | None:
    """Return one cycle as a list of task names (first name repeated at the end), or None.

    Names that are not keys of `predecessors` are ignored (reported elsewhere).
    """
    WHITE, GREY, BLACK = 0, 1, 2
    color = {name: WHITE for name in predecessors}
    for start in sorted(predecessors):
        if color[start] != WHITE:
            continue
        # Iterative DFS along "depends on" edges, keeping the current path.
        path: list[str] = [start]
        stacks = [iter(sorted(predecessors[start]))]
        color[start] = GREY
        while stacks:
            child = next(stacks[-1], None)
            if child is None:
                color[path.pop()] = BLACK
                stacks.pop()
                continue
            if child not in color:
                continue
            if color[child] == GREY:
                cycle = path[path.index(child):] + [child]
                # Report it in execution order: a runs before b runs before ... (reverse of "depends on").
                return list(reversed(cycle))
            if color[child] == WHITE:
                color[child] = GREY
                path.append(child)
                stacks.append(iter(sorted(predecessors[child])))
    return None


def topological_order(predecessors: Mapping[str, Iterable[str]]) -> list[str]:
    """Return the tasks so that each comes after its predecessors (ties by name).

    The graph must be acyclic; raise ValueError otherwise.
    """
    remaining = {name: set(preds) & predecessors.keys() for name, preds in predecessors.items()}
    dependants: dict[str, list[str]] = {name: [] for name in predecessors}
    for name, preds in remaining.items():
        for pred in preds:
            dependants[pred].append(name)
    ready = sorted(name for name, preds in remaining.items() if not preds)
    order: list[str] = []
    while ready:
        name = ready.pop(0)
        order.append(name)
        for child in sorted(dependants[name]):
            remaining[child].discard(name)
            if not remaining[child]:
                ready.append(child)
        ready.sort()
    if len(order) != len(predecessors):
        raise ValueError("the graph has a cycle")
    return order


def ancestors(predecessors: Mapping[str, Iterable[str]]) -> dict[str, frozenset[str]]:
    """Map each task to every task it depends on, directly or not (acyclic graphs only)."""
    result: dict[str, frozenset[str]] = {}
    for name in topological_order(predecessors):
        found: set[str] = set()
        for pred in predecessors[name]:
            if pred in result:
                found.add(pred)
                found |= result[pred]
        result[name] = frozenset(found)
    return result
