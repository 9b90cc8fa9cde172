"""Compile an interaction's task DAG into a series-parallel plan and a Celery canvas.

Celery can only express *series-parallel* schedules: a chain runs its parts one after the
other (every task of a part finishes before any task of the next part starts: a group followed
by something becomes a chord), a group runs its parts at the same time. So the compiler works
on the *order* the DAG implies rather than on its edges: ``x`` must finish before ``y`` starts
exactly when ``x`` is an ancestor of ``y`` (the transitive closure). Transitive edges
(``a→b→c`` plus ``a→c``) therefore change nothing.

Algorithm, applied recursively to a set of tasks ``S`` (initially every task):

1. One task: a :class:`Step`.
2. Split ``S`` into the connected components of its *comparability* graph (``x — y`` when
   one is an ancestor of the other). Several components share no dependency: a
   :class:`Parallel` of the components, each compiled recursively (so independent roots
   start at once).
3. Otherwise split ``S`` into the connected components of its *incomparability* graph. Several
   components are totally ordered (every task of one is an ancestor of every task of the next):
   a :class:`Series` of them, each compiled recursively.
4. Otherwise ``S`` is *prime*: it contains an "N" (``a→c``, ``b→c``, ``b→d``, and ``d`` does
   not depend on ``a``) and no series-parallel schedule of it is exact. Cut ``S`` into a
   down-set ``D`` (a set holding the ancestors of its members) and the rest, run
   ``Series(D, rest)`` and compile both halves recursively. Every pair ``(y, x)`` with ``x``
   in ``D``, ``y`` in the rest and ``x`` not an ancestor of ``y`` is an *extra wait*: ``y``
   now waits for ``x`` although it does not depend on it.

A DAG whose order is series-parallel (chains, fan-out, fan-in, diamonds, nested diamonds,
independent roots and sinks, branches of different lengths) never reaches step 4 and gets the
exact plan: no extra wait. Steps 2 and 3 are right for any DAG: restricting a series-parallel
schedule to a subset of tasks leaves it series-parallel, so no schedule gains by ordering the
components of step 2, and step 3 only follows dependencies.

The cut of step 4 minimises, in this order, the extra waits of the whole sub-plan (those of
the cut plus those of both halves, found recursively), then its depth (the longest run of
steps one after the other, so the critical path grows as little as possible):

- a prime set of at most ``EXACT_CUT_LIMIT`` tasks tries every down-set; a larger one only a
  linear number of natural cuts: the ancestors of each task (with the task), everything but
  the descendants of each task (and the task), and the tasks up to each depth level (longest
  path from a root) or from each height level (longest path to a sink).
- candidates are tried cheapest first by a lower bound (the cut's own extra waits, the
  longest chains of both halves); a candidate whose bound cannot beat the best plan found is
  skipped (branch and bound), and every sub-plan is memoised by its set of tasks.
- once the search has scored ``SEARCH_BUDGET`` candidates, each remaining cut takes its
  best-bounded candidate without looking ahead (greedy), so compiling stays fast whatever
  the shape: about a tenth of a second for 100 thoroughly tangled tasks, far less for usual
  graphs.

So a graph with up to ``EXACT_CUT_LIMIT`` tasks in each prime part, within the budget, gets a
plan with the fewest extra waits possible; larger tangled graphs get a good one, not always
the best (the problem is akin to minimum cograph completion, which is NP-hard).

Tasks are indexed in name order and sets are bit masks; candidates are tried in a fixed order
and ties keep the first, so the plan depends only on the graph: parallel parts are ordered by
their smallest task name.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TypeAlias

import celery
from celery.canvas import Signature

# Prime sets up to this many tasks try every cut. The number of down-sets, hence the work,
# grows exponentially with it; real interactions seldom have a tangled part this large.
EXACT_CUT_LIMIT = 8
# Candidate cuts scored per compile before the search stops looking ahead (see above).
SEARCH_BUDGET = 5000


@dataclass(frozen=True)
class Step:
    """Run one task."""

    name: str


@dataclass(frozen=True)
class Series:
    """Run the parts in order: each part starts once every task of the previous one finished."""

    parts: tuple[Node, ...]


@dataclass(frozen=True)
class Parallel:
    """Run the parts at the same time."""

    parts: tuple[Node, ...]


Node: TypeAlias = Step | Series | Parallel


@dataclass(frozen=True)
class Plan:
    """A series-parallel schedule of an interaction's tasks.

    ``extra_waits`` lists, sorted, every ``(task, waits_for)`` pair where the schedule makes
    ``task`` wait for ``waits_for`` although ``waits_for`` is not an ancestor of ``task`` in
    the DAG. It is empty whenever the DAG's order is series-parallel.
    """

    root: Node
    extra_waits: tuple[tuple[str, str], ...] = ()

    def render(self) -> str:
        """Render the plan as Celery reads it, e.g. ``chain(fetch, group(alert, tweet))``."""
        return render_node(self.root)


def render_node(node: Node) -> str:
    """Render one node: a step is its name, a series ``chain(...)``, a parallel ``group(...)``."""
    if isinstance(node, Step):
        return node.name
    inner = ", ".join(render_node(part) for part in node.parts)
    return f"chain({inner})" if isinstance(node, Series) else f"group({inner})"


def node_tasks(node: Node) -> Iterator[str]:
    """Yield the task names of a node, in plan order."""
    if isinstance(node, Step):
        yield node.name
    else:
        for part in node.parts:
            yield from node_tasks(part)


def node_order(node: Node) -> frozenset[tuple[str, str]]:
    """Return every ``(x, y)`` such that the node makes ``x`` finish before ``y`` starts."""
    if isinstance(node, Step):
        return frozenset()
    pairs: set[tuple[str, str]] = set()
    for part in node.parts:
        pairs |= node_order(part)
    if isinstance(node, Series):
        earlier: list[str] = []
        for part in node.parts:
            names = list(node_tasks(part))
            pairs.update((before, after) for before in earlier for after in names)
            earlier.extend(names)
    return frozenset(pairs)


def compile_plan(predecessors: Mapping[str, Iterable[str]]) -> Plan:
    """Compile a task DAG into a series-parallel plan that respects every dependency.

    ``predecessors`` maps every task name to the names it depends on (its ``execute_after``
    keys). Raises ``ValueError`` for an empty graph, a predecessor that is not a task, or a
    cycle; callers are expected to have validated the graph already.
    """
    poset = _Poset.from_predecessors(predecessors)
    root = _Compiler(poset).solve(poset.everything).node
    ancestors = {name: poset.ancestor_names(i) for i, name in enumerate(poset.names)}
    extra_waits = sorted(
        (after, before) for before, after in node_order(root) if before not in ancestors[after]
    )
    return Plan(root=root, extra_waits=tuple(extra_waits))


def restrict(plan: Plan, keep: Iterable[str]) -> Plan | None:
    """Return the plan of only the tasks in ``keep`` (None when none of them is in the plan).

    The order between kept tasks is the plan's: a part that loses every task disappears, and
    series and parallels left with one part collapse to it. Used to send to the broker only the
    tasks that need a worker: the others run fused into the steps that make them ready.
    """
    kept = frozenset(keep)
    root = _restrict_node(plan.root, kept)
    if root is None:
        return None
    waits = tuple(pair for pair in plan.extra_waits if pair[0] in kept and pair[1] in kept)
    return Plan(root=root, extra_waits=waits)


def _restrict_node(node: Node, kept: frozenset[str]) -> Node | None:
    if isinstance(node, Step):
        return node if node.name in kept else None
    parts = [part for part in (_restrict_node(p, kept) for p in node.parts) if part is not None]
    if not parts:
        return None
    return _series(parts) if isinstance(node, Series) else _parallel(parts)


def to_canvas(plan: Plan, make_signature: Callable[[str], Signature]) -> Signature:
    """Build the Celery canvas of a plan.

    ``make_signature(name)`` must return an immutable signature (``run_task.si(...)``): the
    parts pass no results to each other. A series becomes ``celery.chain``, which turns a group
    followed by anything into a chord, so every task of the group finishes before the next part
    starts; a parallel becomes ``celery.group``. Single-part series and parallels collapse to
    their part. Nothing follows the canvas: the session's last task ends the session itself
    (`interactions/executor.py`), so a plan that ends with a group is a plain group, not a
    chord. Raises ``ValueError`` for a series or parallel without parts.
    """
    return _node_signature(plan.root, make_signature)


def chord_headers(plan: Plan) -> frozenset[str]:
    """The steps whose Celery result a chord waits for (conservatively, every step inside a
    parallel that something follows in a series, at any depth). `to_canvas` makes those
    chords: no other step's result is ever read, so only these need a result stored."""
    found: set[str] = set()

    def walk(node: Node, in_header: bool) -> None:
        if isinstance(node, Step):
            if in_header:
                found.add(node.name)
        elif isinstance(node, Series):
            last = len(node.parts) - 1
            for index, part in enumerate(node.parts):
                walk(part, in_header or (isinstance(part, Parallel) and index < last))
        else:
            for part in node.parts:
                walk(part, in_header)

    walk(plan.root, False)
    return frozenset(found)


def _node_signature(node: Node, make_signature: Callable[[str], Signature]) -> Signature:
    """Build the signature of one node (see :func:`to_canvas`)."""
    if isinstance(node, Step):
        return make_signature(node.name)
    if not node.parts:
        raise ValueError(f"empty {type(node).__name__} in plan")
    parts = [_node_signature(part, make_signature) for part in node.parts]
    if len(parts) == 1:
        # celery.chain(x) stays a one-task chain and celery.group(x) a one-task group.
        return parts[0]
    if isinstance(node, Series):
        # chain() folds nested chains and upgrades `group, next` to chord(group, next).
        return celery.chain(*parts)
    return celery.group(*parts)


def _series(parts: Iterable[Node]) -> Node:
    """Build a series, flattening nested series and collapsing a single part."""
    flat: list[Node] = []
    for part in parts:
        flat.extend(part.parts if isinstance(part, Series) else (part,))
    return flat[0] if len(flat) == 1 else Series(tuple(flat))


def _parallel(parts: Iterable[Node]) -> Node:
    """Build a parallel, flattening nested parallels and collapsing a single part."""
    flat: list[Node] = []
    for part in parts:
        flat.extend(part.parts if isinstance(part, Parallel) else (part,))
    return flat[0] if len(flat) == 1 else Parallel(tuple(flat))


def _bits(mask: int) -> Iterator[int]:
    """Yield the indexes set in ``mask``, lowest first."""
    while mask:
        low = mask & -mask
        yield low.bit_length() - 1
        mask ^= low


def _levels(order: list[int], before: list[int]) -> list[int]:
    """Group tasks by the length of the longest chain before them: a mask per level.

    ``before[n]`` is the mask of the tasks that come before ``order[n]``; they all appear
    earlier in ``order``.
    """
    levels: list[int] = []
    for i, earlier in zip(order, before):
        level = _top_level(levels, earlier) + 1 if earlier else 0
        if level == len(levels):
            levels.append(0)
        levels[level] |= 1 << i
    return levels


def _top_level(levels: list[int], mask: int) -> int:
    """Return the highest level holding a task of a non-empty ``mask``."""
    level = len(levels) - 1
    while not levels[level] & mask:
        level -= 1
    return level


def _lowest(mask: int) -> int:
    """Return the lowest index set in a non-empty ``mask``."""
    return (mask & -mask).bit_length() - 1


@dataclass(frozen=True)
class _Poset:
    """The order a DAG implies: tasks indexed in name order, relatives as bit masks."""

    names: tuple[str, ...]
    ancestors: tuple[int, ...]  # ancestors[i]: every task that task i transitively depends on
    descendants: tuple[int, ...]  # descendants[i]: every task that transitively depends on i

    @classmethod
    def from_predecessors(cls, predecessors: Mapping[str, Iterable[str]]) -> _Poset:
        """Build the transitive closure; raise ``ValueError`` on unknown names or a cycle."""
        names = tuple(sorted(predecessors))
        if not names:
            raise ValueError("cannot compile a plan without tasks")
        index = {name: i for i, name in enumerate(names)}
        direct = [0] * len(names)
        for name, before in predecessors.items():
            for predecessor in before:
                if predecessor not in index:
                    raise ValueError(f"task {name!r} depends on unknown task {predecessor!r}")
                direct[index[name]] |= 1 << index[predecessor]

        found: list[int | None] = [None] * len(names)
        visiting: set[int] = set()

        def resolve(i: int) -> int:
            # Recursion depth is bounded by the configured maximum number of tasks.
            known = found[i]
            if known is not None:
                return known
            if i in visiting:
                raise ValueError(f"dependency cycle through task {names[i]!r}")
            visiting.add(i)
            mask = direct[i]
            for j in _bits(direct[i]):
                mask |= resolve(j)
            visiting.discard(i)
            found[i] = mask
            return mask

        ancestors = tuple(resolve(i) for i in range(len(names)))
        descendants = [0] * len(names)
        for i, mask in enumerate(ancestors):
            for j in _bits(mask):
                descendants[j] |= 1 << i
        return cls(names=names, ancestors=ancestors, descendants=tuple(descendants))

    @property
    def everything(self) -> int:
        return (1 << len(self.names)) - 1

    def ancestor_names(self, i: int) -> frozenset[str]:
        return frozenset(self.names[j] for j in _bits(self.ancestors[i]))

    def comparable(self, i: int) -> int:
        return self.ancestors[i] | self.descendants[i]


@dataclass(frozen=True)
class _Solution:
    """The best plan found for a set of tasks, with its cost."""

    node: Node
    extra: int  # extra waits inside the node
    depth: int  # longest run of steps one after the other

    @property
    def cost(self) -> tuple[int, int]:
        return (self.extra, self.depth)


class _Compiler:
    """Compile subsets of a poset (as bit masks), memoising each subset's plan."""

    def __init__(self, poset: _Poset) -> None:
        self.poset = poset
        self.solved: dict[int, _Solution] = {}
        self.budget = SEARCH_BUDGET

    def solve(self, mask: int) -> _Solution:
        """Return the plan of the tasks in ``mask``."""
        solution = self.solved.get(mask)
        if solution is None:
            solution = self.solved[mask] = self._solve(mask)
        return solution

    def _solve(self, mask: int) -> _Solution:
        poset = self.poset
        if mask & (mask - 1) == 0:
            return _Solution(Step(poset.names[_lowest(mask)]), extra=0, depth=1)

        independent = self._components(mask, poset.comparable)
        if len(independent) > 1:
            # Components come out ordered by their lowest index, i.e. their smallest name.
            solved = [self.solve(part) for part in independent]
            return _Solution(
                _parallel(s.node for s in solved),
                extra=sum(s.extra for s in solved),
                depth=max(s.depth for s in solved),
            )

        ordered = self._components(mask, lambda i: ~poset.comparable(i) & ~(1 << i))
        if len(ordered) > 1:
            # Every member of a block has all earlier blocks among its ancestors, so the
            # ancestors of any one member rank the blocks.
            ordered.sort(key=lambda part: (poset.ancestors[_lowest(part)] & mask).bit_count())
            solved = [self.solve(part) for part in ordered]
            return _Solution(
                _series(s.node for s in solved),
                extra=sum(s.extra for s in solved),
                depth=sum(s.depth for s in solved),
            )

        return self._cut(mask)

    @staticmethod
    def _components(mask: int, neighbours: Callable[[int], int]) -> list[int]:
        """Split ``mask`` into the connected components of a graph, by lowest index."""
        components = []
        remaining = mask
        while remaining:
            component = frontier = remaining & -remaining
            while frontier:
                i = _lowest(frontier)
                frontier ^= 1 << i
                new = neighbours(i) & mask & ~component
                component |= new
                frontier |= new
            components.append(component)
            remaining &= ~component
        return components

    def _cut(self, mask: int) -> _Solution:
        """Cut a prime set into ``Series(down-set, rest)``, the cheapest whole sub-plan found."""
        poset = self.poset
        # A linear extension: an ancestor has strictly fewer ancestors in the set.
        order = sorted(_bits(mask), key=lambda i: (poset.ancestors[i] & mask).bit_count())
        # by_depth[k]: the tasks whose longest chain of ancestors in the set has k tasks;
        # by_height[k]: the same for descendants.
        by_depth = _levels(order, [poset.ancestors[i] & mask for i in order])
        by_height = _levels(order[::-1], [poset.descendants[i] & mask for i in order[::-1]])
        if mask.bit_count() <= EXACT_CUT_LIMIT:
            candidates = self._all_down_sets(mask, order)
        else:
            candidates = self._natural_down_sets(mask, by_depth, by_height)

        def bound(down: int) -> tuple[int, int]:
            # A down-set holds all the ancestors of its members and the rest all the
            # descendants of its, so these are the longest chains of both halves.
            rest = mask & ~down
            least_depth = _top_level(by_depth, down) + _top_level(by_height, rest) + 2
            return (self._crossing_waits(down, rest), least_depth)

        scored = sorted((bound(down), position, down) for position, down in enumerate(candidates))
        self.budget -= len(scored)
        best: _Solution | None = None
        for (crossing, least_depth), _, down in scored:
            if best is not None and (self.budget < 0 or (crossing, least_depth) >= best.cost):
                break  # every later candidate is bounded no better (they are sorted)
            first, then = self.solve(down), self.solve(mask & ~down)
            extra = crossing + first.extra + then.extra
            total_depth = first.depth + then.depth
            if best is None or (extra, total_depth) < best.cost:
                best = _Solution(_series((first.node, then.node)), extra=extra, depth=total_depth)
        assert best is not None, "a prime set has at least four tasks, hence a proper down-set"
        return best

    def _crossing_waits(self, down: int, rest: int) -> int:
        """Count the pairs of ``rest`` × ``down`` that ``Series(down, rest)`` adds."""
        # Walk the smaller side: this runs for every candidate cut.
        total = 0
        if down.bit_count() <= rest.bit_count():
            descendants, walk, other = self.poset.descendants, down, rest
        else:
            descendants, walk, other = self.poset.ancestors, rest, down
        while walk:
            low = walk & -walk
            total += (other & ~descendants[low.bit_length() - 1]).bit_count()
            walk ^= low
        return total

    def _all_down_sets(self, mask: int, order: list[int]) -> list[int]:
        """Return every non-empty proper down-set of ``mask``; ``order`` is a linear extension."""
        ancestors = self.poset.ancestors
        found: list[int] = []

        def extend(position: int, chosen: int) -> None:
            if position == len(order):
                if chosen and chosen != mask:
                    found.append(chosen)
                return
            i = order[position]
            # A task may join once all its ancestors in the set have; they come before it.
            if ancestors[i] & mask & ~chosen == 0:
                extend(position + 1, chosen | 1 << i)
            extend(position + 1, chosen)

        extend(0, 0)
        return found

    def _natural_down_sets(self, mask: int, by_depth: list[int], by_height: list[int]) -> list[int]:
        """Return a linear number of likely good down-sets of ``mask``, without repeats."""
        poset = self.poset
        candidates = [(poset.ancestors[i] & mask) | 1 << i for i in _bits(mask)]
        candidates += [mask & ~poset.descendants[i] & ~(1 << i) for i in _bits(mask)]
        # The tasks up to each depth, and those from each height (a down-set too).
        candidates += itertools.accumulate(by_depth, operator.or_)
        candidates += itertools.accumulate(reversed(by_height), operator.or_)
        return list(dict.fromkeys(down for down in candidates if down and down != mask))
