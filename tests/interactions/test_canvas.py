"""The DAG → series-parallel plan → Celery canvas compiler, without a broker.

The order a plan or a canvas imposes is recomputed here independently of the module: the set
of pairs ``(x, y)`` where ``x`` finishes before ``y`` starts (chain: one after the other;
group: at once; chord: the header, then the body).
"""
from __future__ import annotations

import functools
import itertools
import random
from collections.abc import Iterable, Mapping
from typing import Any

import celery
import pytest
from celery.canvas import Signature, _chain, _chord, group
from hypothesis import given, settings
from hypothesis import strategies as st

from interactions.engine.canvas import (
    Parallel,
    Plan,
    Series,
    Step,
    chord_headers,
    compile_plan,
    to_canvas,
)

Graph = Mapping[str, Iterable[str]]
Order = set[tuple[str, str]]


def sig(name: str) -> Signature:
    return celery.signature("t", args=(name,), immutable=True)




# --- independent reference computations -------------------------------------------------


def ancestors(graph: Graph) -> dict[str, set[str]]:
    """Every task's transitive predecessors."""
    found: dict[str, set[str]] = {}

    def visit(name: str) -> set[str]:
        if name not in found:
            found[name] = set()
            for pred in graph[name]:
                found[name] |= {pred} | visit(pred)
        return found[name]

    for name in graph:
        visit(name)
    return found


def closure(graph: Graph) -> Order:
    """Every (x, y) where y depends on x, directly or not."""
    return {(before, name) for name, before_all in ancestors(graph).items() for before in before_all}


def plan_order(node: Step | Series | Parallel) -> tuple[list[str], Order]:
    """The tasks of a plan node and its (x finishes before y starts) pairs."""
    if isinstance(node, Step):
        return [node.name], set()
    tasks: list[str] = []
    pairs: Order = set()
    for part in node.parts:
        part_tasks, part_pairs = plan_order(part)
        pairs |= part_pairs
        if isinstance(node, Series):
            pairs |= {(x, y) for x in tasks for y in part_tasks}
        tasks += part_tasks
    return tasks, pairs


def header(chord: _chord) -> list[Signature]:
    """The members of a chord's header (Celery keeps a group or a list)."""
    tasks = chord.tasks
    return list(tasks.tasks if isinstance(tasks, group) else tasks)


def canvas_order(canvas: Signature) -> tuple[list[str], Order]:
    """The tasks of a Celery canvas and its (x finishes before y starts) pairs."""
    if isinstance(canvas, _chord):
        sequence = [group(header(canvas)), canvas.body]
    elif isinstance(canvas, _chain):
        sequence = list(canvas.tasks)
    elif isinstance(canvas, group):
        tasks: list[str] = []
        pairs: Order = set()
        for member in canvas.tasks:
            member_tasks, member_pairs = canvas_order(member)
            tasks += member_tasks
            pairs |= member_pairs
        return tasks, pairs
    else:
        return [canvas.args[0] if canvas.args else canvas.task], set()
    tasks, pairs = [], set()
    for element in sequence:
        element_tasks, element_pairs = canvas_order(element)
        pairs |= element_pairs | {(x, y) for x in tasks for y in element_tasks}
        tasks += element_tasks
    return tasks, pairs


def shape(canvas: Signature) -> object:
    """A canvas as nested tuples: ("chain", ...), ("group", ...), ("chord", header, body), names."""
    if isinstance(canvas, _chord):
        return ("chord", tuple(shape(member) for member in header(canvas)), shape(canvas.body))
    if isinstance(canvas, _chain):
        return ("chain", *(shape(element) for element in canvas.tasks))
    if isinstance(canvas, group):
        return ("group", *(shape(member) for member in canvas.tasks))
    return canvas.args[0] if canvas.args else canvas.task


def fewest_extra_waits(graph: Graph) -> int:
    """The fewest extra waits of any series-parallel schedule, by exhaustive search."""
    before = ancestors(graph)

    @functools.cache
    def best(tasks: frozenset[str]) -> int:
        if len(tasks) == 1:
            return 0
        names = sorted(tasks)
        found = len(tasks) ** 2
        for size in range(1, len(names)):
            for combo in itertools.combinations(names, size):
                first, rest = frozenset(combo), tasks - frozenset(combo)
                if names[0] in first and all(
                    x not in before[y] and y not in before[x] for x in first for y in rest
                ):
                    found = min(found, best(first) + best(rest))
                if not any(y in before[x] for x in first for y in rest):
                    waits = sum(x not in before[y] for x in first for y in rest)
                    found = min(found, waits + best(first) + best(rest))
        return found

    return best(frozenset(graph))


def assert_sound(graph: Graph, plan: Plan) -> None:
    """Check a plan runs each task once, respects every dependency and reports its extras."""
    tasks, pairs = plan_order(plan.root)
    assert sorted(tasks) == sorted(graph)
    required = closure(graph)
    assert required <= pairs
    assert plan.extra_waits == tuple(sorted((y, x) for x, y in pairs - required))


def assert_canonical(node: Step | Series | Parallel) -> None:
    """Check no node has a single part or a part of its own kind."""
    if isinstance(node, Step):
        return
    assert len(node.parts) >= 2
    for part in node.parts:
        assert type(part) is not type(node)
        assert_canonical(part)


# --- plans of series-parallel graphs -----------------------------------------------------

EXACT_PLANS = [
    pytest.param({"a": []}, "a", id="single task"),
    pytest.param({"a": [], "b": ["a"], "c": ["b"]}, "chain(a, b, c)", id="chain"),
    pytest.param(
        {"fetch": [], "tweet": ["fetch"], "alert": ["fetch"]},
        "chain(fetch, group(alert, tweet))",
        id="fan-out",
    ),
    pytest.param({"a": [], "b": [], "c": ["a", "b"]}, "chain(group(a, b), c)", id="fan-in"),
    pytest.param(
        {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]}, "chain(a, group(b, c), d)", id="diamond"
    ),
    pytest.param(
        {"a": [], "b": ["a"], "c": ["a"], "d": ["b"], "e": ["b"], "f": ["d", "e"], "g": ["f", "c"]},
        "chain(a, group(chain(b, group(d, e), f), c), g)",
        id="nested diamond",
    ),
    pytest.param({"b": [], "a": []}, "group(a, b)", id="independent roots"),
    pytest.param(
        {"a": [], "b": ["a"], "c": [], "d": ["c"]},
        "group(chain(a, b), chain(c, d))",
        id="independent chains",
    ),
    pytest.param(
        {"a": [], "b": ["a"], "c": ["a"], "d": ["a"]}, "chain(a, group(b, c, d))", id="several sinks"
    ),
    pytest.param(
        {"a": [], "b": ["a"], "d": ["b"], "c": ["a"]},
        "chain(a, group(chain(b, d), c))",
        id="branches of different lengths",
    ),
    pytest.param(
        {"r1": [], "r2": [], "x": ["r1", "r2"], "y": ["x"], "z": ["x"]},
        "chain(group(r1, r2), x, group(y, z))",
        id="fan-in then fan-out",
    ),
    pytest.param({"a": [], "b": ["a"], "c": ["a", "b"]}, "chain(a, b, c)", id="transitive edge"),
    pytest.param(
        {"a": [], "b": ["a"], "c": ["a"], "d": ["a", "b", "c"], "e": ["a", "d"]},
        "chain(a, group(b, c), d, e)",
        id="diamond with transitive edges",
    ),
]


@pytest.mark.parametrize(("graph", "rendered"), EXACT_PLANS)
def test_series_parallel_graph_compiles_exactly(graph: Graph, rendered: str) -> None:
    plan = compile_plan(graph)
    assert plan.render() == rendered
    assert plan.extra_waits == ()
    assert_sound(graph, plan)


def test_single_task_is_a_step() -> None:
    assert compile_plan({"only": []}) == Plan(root=Step("only"), extra_waits=())


def test_diamond_plan_tree() -> None:
    plan = compile_plan({"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]})
    assert plan.root == Series((Step("a"), Parallel((Step("b"), Step("c"))), Step("d")))


def test_parallel_parts_are_ordered_by_smallest_name() -> None:
    plan = compile_plan({"z": [], "y": ["z"], "b": [], "m": [], "c": ["m"]})
    assert plan.render() == "group(b, chain(m, c), chain(z, y))"


def test_plan_does_not_depend_on_input_order() -> None:
    graph = {"d": ["b", "c"], "c": ["a"], "b": ["a"], "a": [], "e": ["b"], "f": []}
    shuffled = dict(reversed(list(graph.items())))
    assert compile_plan(shuffled) == compile_plan({k: set(v) for k, v in graph.items()})


# --- plans of graphs that are not series-parallel --------------------------------------------


def test_n_shape_adds_one_wait() -> None:
    graph = {"a": [], "b": [], "c": ["a", "b"], "d": ["b"]}
    plan = compile_plan(graph)
    assert plan.render() == "chain(group(a, b), group(c, d))"
    assert plan.extra_waits == (("d", "a"),)
    assert_sound(graph, plan)


def test_shared_root_with_partial_fan_in_adds_one_wait() -> None:
    # Roots a and b start at once; c depends on a only, d on both.
    graph = {"a": [], "b": [], "c": ["a"], "d": ["a", "b"]}
    plan = compile_plan(graph)
    assert plan.render() == "chain(group(a, b), group(c, d))"
    assert plan.extra_waits == (("c", "b"),)
    assert_sound(graph, plan)


def test_two_chains_with_a_cross_edge_wait_at_one_barrier() -> None:
    graph = {
        "a1": [], "a2": ["a1"], "a3": ["a2"], "a4": ["a3"],
        "b1": [], "b2": ["b1"], "b3": ["b2", "a2"], "b4": ["b3"],
    }
    plan = compile_plan(graph)
    assert plan.render() == (
        "chain(group(chain(a1, a2), chain(b1, b2)), group(chain(a3, a4), chain(b3, b4)))"
    )
    assert plan.extra_waits == (("a3", "b1"), ("a3", "b2"), ("a4", "b1"), ("a4", "b2"))
    assert_sound(graph, plan)


def test_n_shape_inside_a_larger_graph_keeps_the_rest_exact() -> None:
    graph = {
        "start": [], "a": ["start"], "b": ["start"], "c": ["a", "b"], "d": ["b"],
        "end": ["c", "d"], "side": [],
    }
    plan = compile_plan(graph)
    assert plan.render() == "group(chain(start, group(a, b), group(c, d), end), side)"
    assert plan.extra_waits == (("d", "a"),)
    assert_sound(graph, plan)


def test_extra_waits_omit_waits_implied_by_dependencies() -> None:
    # d waits for a only through the plan; e already depends on a through c.
    graph = {"a": [], "b": [], "c": ["a", "b"], "d": ["b"], "e": ["c", "d"]}
    plan = compile_plan(graph)
    assert plan.extra_waits == (("d", "a"),)
    assert_sound(graph, plan)


# --- invalid input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("graph", "message"),
    [
        ({}, "without tasks"),
        ({"a": ["ghost"]}, "unknown task 'ghost'"),
        ({"a": ["b"], "b": ["a"]}, "cycle"),
        ({"a": ["a"]}, "cycle"),
    ],
)
def test_invalid_graph_raises(graph: Graph, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        compile_plan(graph)


# --- canvases --------------------------------------------------------------------------------


def test_canvas_of_a_single_task_is_its_signature() -> None:
    canvas = to_canvas(compile_plan({"a": []}), sig)
    assert type(canvas) is Signature
    assert shape(canvas) == "a"


def test_canvas_of_a_chain() -> None:
    canvas = to_canvas(compile_plan({"a": [], "b": ["a"], "c": ["b"]}), sig)
    assert isinstance(canvas, _chain)
    assert shape(canvas) == ("chain", "a", "b", "c")


def test_canvas_of_a_fan_out_ends_with_a_group() -> None:
    canvas = to_canvas(compile_plan({"fetch": [], "tweet": ["fetch"], "alert": ["fetch"]}), sig)
    assert isinstance(canvas, _chain)
    assert isinstance(canvas.tasks[1], group)
    assert shape(canvas) == ("chain", "fetch", ("group", "alert", "tweet"))


def test_canvas_of_independent_roots_is_a_group() -> None:
    canvas = to_canvas(compile_plan({"a": [], "b": []}), sig)
    assert isinstance(canvas, group)
    assert shape(canvas) == ("group", "a", "b")


def test_canvas_of_a_fan_in_is_a_chord() -> None:
    canvas = to_canvas(compile_plan({"a": [], "b": [], "c": ["a", "b"]}), sig)
    assert isinstance(canvas, _chord)
    assert shape(canvas) == ("chord", ("a", "b"), "c")


def test_canvas_of_a_diamond_upgrades_the_group_to_a_chord() -> None:
    canvas = to_canvas(compile_plan({"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]}), sig)
    assert isinstance(canvas, _chain)
    assert isinstance(canvas.tasks[1], _chord)
    assert shape(canvas) == ("chain", "a", ("chord", ("b", "c"), "d"))


def test_canvas_of_branches_of_different_lengths_nests_a_chain_in_a_group() -> None:
    canvas = to_canvas(compile_plan({"a": [], "b": ["a"], "d": ["b"], "c": ["a"]}), sig)
    assert shape(canvas) == ("chain", "a", ("group", ("chain", "b", "d"), "c"))


def test_canvas_of_n_shape_waits_at_one_chord() -> None:
    canvas = to_canvas(compile_plan({"a": [], "b": [], "c": ["a", "b"], "d": ["b"]}), sig)
    assert shape(canvas) == ("chord", ("a", "b"), ("group", "c", "d"))


def test_a_fan_out_at_the_end_is_a_plain_group_not_a_chord() -> None:
    # Nothing follows the canvas (the last task ends the session), so no chord waits on it.
    canvas = to_canvas(compile_plan({"fetch": [], "tweet": ["fetch"], "alert": ["fetch"]}), sig)
    assert shape(canvas) == ("chain", "fetch", ("group", "alert", "tweet"))


def test_independent_roots_are_a_plain_group() -> None:
    canvas = to_canvas(compile_plan({"a": [], "b": []}), sig)
    assert isinstance(canvas, group)
    assert shape(canvas) == ("group", "a", "b")


def test_canvas_collapses_single_part_nodes() -> None:
    plan = Plan(root=Series((Parallel((Step("a"),)), Series((Step("b"),)))))
    assert shape(to_canvas(plan, sig)) == ("chain", "a", "b")


def test_canvas_of_an_empty_node_raises() -> None:
    with pytest.raises(ValueError, match="empty Parallel"):
        to_canvas(Plan(root=Series((Step("a"), Parallel(())))), sig)


def test_a_large_tangled_graph_compiles_soundly() -> None:
    # 100 tasks is the default maximum; this takes the heuristic, budgeted path.
    rng = random.Random(7)
    names = [f"t{i:03d}" for i in range(100)]
    rng.shuffle(names)
    graph = {
        name: [names[j] for j in range(i) if rng.random() < 0.05] for i, name in enumerate(names)
    }
    plan = compile_plan(graph)
    assert_sound(graph, plan)
    assert canvas_order(to_canvas(plan, sig))[1] == plan_order(plan.root)[1]


# --- properties ------------------------------------------------------------------------------


@st.composite
def dags(draw: st.DrawFn, max_tasks: int = 15) -> dict[str, list[str]]:
    """A random DAG: edges go from earlier to later tasks; names are shuffled."""
    size = draw(st.integers(min_value=1, max_value=max_tasks))
    names = draw(st.permutations([f"t{i:02d}" for i in range(size)]))
    density = draw(st.sampled_from([0.1, 0.25, 0.5]))
    edges = draw(st.lists(st.floats(0, 1), min_size=size * size, max_size=size * size))
    return {
        names[j]: [names[i] for i in range(j) if edges[i * size + j] < density]
        for j in range(size)
    }


@st.composite
def series_parallel_graphs(draw: st.DrawFn) -> dict[str, set[str]]:
    """A random DAG built by series and parallel composition, plus some transitive edges."""
    tree = draw(
        st.recursive(
            st.just("task"),
            lambda inner: st.tuples(st.sampled_from(["series", "parallel"]), st.lists(inner, min_size=2, max_size=3)),
            max_leaves=14,
        )
    )
    size = sum(1 for _ in _leaves(tree))
    names = iter(draw(st.permutations([f"t{i:02d}" for i in range(size)])))
    graph: dict[str, set[str]] = {}

    def build(node: Any) -> tuple[list[str], list[str]]:
        """Add a composed node's tasks; return its sources and sinks."""
        if node == "task":
            name = next(names)
            graph[name] = set()
            return [name], [name]
        kind, parts = node
        built = [build(part) for part in parts]
        if kind == "parallel":
            return [s for b in built for s in b[0]], [s for b in built for s in b[1]]
        for (_, sinks), (sources, _) in itertools.pairwise(built):
            for source in sources:
                graph[source] |= set(sinks)
        return built[0][0], built[-1][1]

    build(tree)
    implied = sorted(closure(graph))
    for before, after in draw(st.lists(st.sampled_from(implied), max_size=4)) if implied else []:
        graph[after].add(before)
    return graph


def _leaves(tree: Any) -> Iterable[str]:
    if tree == "task":
        yield "task"
    else:
        for part in tree[1]:
            yield from _leaves(part)


@settings(max_examples=300, deadline=None)
@given(dags())
def test_every_dependency_is_respected_and_extra_waits_are_exact(graph: dict[str, list[str]]) -> None:
    plan = compile_plan(graph)
    assert_sound(graph, plan)
    assert_canonical(plan.root)


@settings(max_examples=150, deadline=None)
@given(dags())
def test_canvas_imposes_exactly_the_plan_order(graph: dict[str, list[str]]) -> None:
    plan = compile_plan(graph)
    tasks, pairs = canvas_order(to_canvas(plan, sig))
    assert sorted(tasks) == sorted(graph)
    assert pairs == plan_order(plan.root)[1]


@settings(max_examples=300, deadline=None)
@given(series_parallel_graphs())
def test_series_parallel_compositions_compile_exactly(graph: dict[str, set[str]]) -> None:
    plan = compile_plan(graph)
    assert plan.extra_waits == ()
    assert plan_order(plan.root)[1] == closure(graph)
    assert_canonical(plan.root)


@settings(max_examples=200, deadline=None)
@given(dags(max_tasks=7))
def test_small_graphs_get_the_fewest_extra_waits(graph: dict[str, list[str]]) -> None:
    assert len(compile_plan(graph).extra_waits) == fewest_extra_waits(graph)


def test_a_fan_out_beside_an_independent_root_stays_exact() -> None:
    plan = compile_plan({"a": [], "b": ["a"], "c": ["a"], "d": []})
    assert plan.render() == "group(chain(a, group(b, c)), d)"
    assert plan.extra_waits == ()


@pytest.mark.parametrize("graph, headers", [
    ({"a": [], "b": ["a"], "c": ["b"]}, set()),  # a chain: nothing waits on a result
    ({"a": [], "b": []}, set()),  # a group at the end is not a chord
    ({"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]}, {"b", "c"}),  # chain(a, chord([b, c], d))
    ({"a": [], "b": [], "c": ["a", "b"], "d": ["c"]}, {"a", "b"}),
    ({"a": [], "b": ["a"], "c": [], "d": ["b", "c"]}, {"a", "b", "c"}),  # a chain inside the header
])
def test_only_steps_a_chord_waits_on_store_their_result(graph, headers):
    plan = compile_plan(graph)
    assert chord_headers(plan) == headers
    # Against Celery's own reading of the canvas: every task in a chord's header is listed.
    canvas = to_canvas(plan, lambda name: celery.signature("noop", args=(name,), immutable=True))
    in_headers: set[str] = set()

    def visit(node: Any) -> None:
        if isinstance(node, _chord):
            for task in node.tasks:
                collect(task)
            visit(node.body)
        elif isinstance(node, (_chain, group)):
            for task in node.tasks:
                visit(task)

    def collect(node: Any) -> None:
        if isinstance(node, (_chain, group, _chord)):
            for task in node.tasks:
                collect(task)
            if isinstance(node, _chord):
                collect(node.body)
        else:
            in_headers.add(node.args[0])

    visit(canvas)
    assert in_headers <= chord_headers(plan)
