"""Unit tests of the pure engine modules: definition, graph, references, inputs (no database)."""
from __future__ import annotations

import jsonschema
import pytest
from hypothesis import given, settings as hypothesis_settings, strategies as st

from interactions.engine.definition import Blank, DefinitionInvalid, Limits, parse_definition
from interactions.engine.graph import ancestors, find_cycle, topological_order
from interactions.engine.inputs import check_input, example_input, input_schema
from interactions.engine.references import (
    Reference,
    ReferenceError_,
    find_references,
    is_reference,
    parse_reference,
    template_references,
)
from tasks_catalog.builtins import BUILTIN_TASK_TYPES

TYPES = {cls.key: cls() for cls in BUILTIN_TASK_TYPES}
TWITTER_ID = "11111111-1111-1111-1111-111111111111"
SMTP_ID = "22222222-2222-2222-2222-222222222222"
INTEGRATIONS = {TWITTER_ID: "twitter", SMTP_ID: "smtp"}


def parse(tasks, integrations=INTEGRATIONS, limits=Limits()):
    return parse_definition(tasks, task_type=TYPES.get, integrations=integrations, limits=limits)


def errors_of(tasks, **kwargs) -> dict[str, list[str]]:
    with pytest.raises(DefinitionInvalid) as caught:
        parse(tasks, **kwargs)
    return caught.value.errors


SPEC_EXAMPLE = {
    "fetch": {"type": "http_request", "body": {"method": "GET", "url": None}},
    "tweet": {"type": "send_tweet", "integration": TWITTER_ID,
              "body": {"text": {"$template": "Order {{ fetch.body.id }} shipped"}},
              "execute_after": {"fetch": ["completed"]}, "retries": 2, "timeout": 10},
    "alert": {"type": "send_email", "integration": SMTP_ID,
              "body": {"to": "ops@example.com", "subject": "fetch failed", "text": {"$ref": "fetch.error"}},
              "execute_after": {"fetch": ["failed"]}},
}


class TestParseDefinition:
    def test_the_spec_example_parses(self):
        definition = parse(SPEC_EXAMPLE)
        assert set(definition.tasks) == {"fetch", "tweet", "alert"}
        tweet = definition.tasks["tweet"]
        assert tweet.execute_after == {"fetch": ("completed",)}
        assert tweet.retries == 2 and tweet.timeout == 10 and tweet.integration == TWITTER_ID
        assert definition.predecessors() == {"fetch": frozenset(), "tweet": {"fetch"}, "alert": {"fetch"}}
        assert [(b.task, b.field.name) for b in definition.blanks] == [("fetch", "url")]

    def test_required_field_left_out_is_a_blank(self):
        definition = parse({"d": {"type": "delay", "body": {}}})
        assert [(b.task, b.field.name) for b in definition.blanks] == [("d", "seconds")]

    def test_optional_field_left_out_is_not_a_blank(self):
        assert parse({"d": {"type": "fail"}}).blanks == ()

    def test_optional_field_set_to_null_is_a_blank(self):
        definition = parse({"d": {"type": "fail", "body": {"message": None}}})
        assert [(b.task, b.field.name, b.field.required) for b in definition.blanks] == [("d", "message", False)]

    def test_a_single_status_string_is_accepted_as_a_list(self):
        definition = parse({"a": {"type": "fail"}, "b": {"type": "fail", "execute_after": {"a": "failed"}}})
        assert definition.tasks["b"].execute_after == {"a": ("failed",)}

    def test_statuses_are_deduplicated_and_sorted(self):
        definition = parse({"a": {"type": "fail"},
                            "b": {"type": "fail", "execute_after": {"a": ["failed", "completed", "failed"]}}})
        assert definition.tasks["b"].execute_after == {"a": ("completed", "failed")}

    def test_integrations_none_skips_the_integration_check(self):
        tasks = {"t": {"type": "send_tweet", "integration": "whatever", "body": {"text": "hi"}}}
        assert parse(tasks, integrations=None).tasks["t"].integration == "whatever"

    def test_all_problems_collected(self):
        errors = errors_of({
            "a": {"type": "nope"},
            "b": {"body": {}},
            "c": {"type": "delay", "body": {"seconds": "x", "bogus": 1}, "retries": -1, "timeout": "1",
                  "execute_after": {"zz": ["completed"]}, "color": "red"},
            "t": {"type": "send_tweet", "integration": SMTP_ID, "body": {"text": "hi"}},
        })
        assert set(errors) == {
            "tasks.a.type", "tasks.b.type", "tasks.c.body.seconds", "tasks.c.body.bogus", "tasks.c.retries",
            "tasks.c.timeout", "tasks.c.execute_after.zz", "tasks.c.color", "tasks.t.integration",
        }

    def test_cycle_listed_in_execution_order(self):
        errors = errors_of({
            "a": {"type": "fail", "execute_after": {"b": ["completed"]}},
            "b": {"type": "fail", "execute_after": {"a": ["completed"]}},
        })
        assert errors == {"tasks": ["The tasks form a cycle: a -> b -> a."]}

    def test_reference_to_non_ancestor(self):
        errors = errors_of({
            "a": {"type": "transform", "body": {"data": None, "expression": "@"}},
            "b": {"type": "transform", "body": {"data": {"k": [{"$ref": "a.x"}]}, "expression": "@"}},
        })
        assert list(errors) == ["tasks.b.body.data"]
        assert "not an ancestor" in errors["tasks.b.body.data"][0]

    def test_malformed_reference_is_reported_once(self):
        errors = errors_of({
            "a": {"type": "transform", "body": {"data": None, "expression": "@"}},
            "b": {"type": "transform", "body": {"data": {"$ref": "a.[["}, "expression": "@"},
                  "execute_after": {"a": ["completed"]}},
        })
        assert list(errors) == ["tasks.b.body.data"] and len(errors["tasks.b.body.data"]) == 1

    def test_max_tasks(self):
        errors = errors_of({f"t{i}": {"type": "fail"} for i in range(3)}, limits=Limits(max_tasks=2))
        assert errors == {"tasks": ["Too many tasks: 3 (the maximum is 2)."]}

    @pytest.mark.parametrize("raw", [None, [], {}, "tasks"])
    def test_not_a_non_empty_object(self, raw):
        assert list(errors_of(raw)) == ["tasks"]

    def test_body_must_be_an_object(self):
        assert "tasks.a.body" in errors_of({"a": {"type": "fail", "body": ["x"]}})

    def test_retries_bool_is_not_an_integer(self):
        assert "tasks.a.retries" in errors_of({"a": {"type": "fail", "retries": True}})

    def test_reference_satisfies_a_typed_field(self):
        definition = parse({
            "a": {"type": "transform", "body": {"data": None, "expression": "@"}},
            "d": {"type": "delay", "body": {"seconds": {"$ref": "a.n"}}, "execute_after": {"a": ["completed"]}},
        })
        assert definition.tasks["d"].body == {"seconds": {"$ref": "a.n"}}


class TestReferences:
    @pytest.mark.parametrize("text,expected", [
        ("fetch", Reference("fetch", "")),
        ("fetch.body.id", Reference("fetch", "body.id")),
        ("fetch.error", Reference("fetch", "error")),
        (" fetch.items[0] ", Reference("fetch", "items[0]")),
    ])
    def test_parse(self, text, expected):
        assert parse_reference(text) == expected

    @pytest.mark.parametrize("text", ["", "   ", None, 3, "1abc.x", "fetch.[[", "-x"])
    def test_parse_rejects(self, text):
        with pytest.raises(ReferenceError_):
            parse_reference(text)

    def test_source_round_trips(self):
        assert parse_reference("a.b.c").source == "a.b.c"
        assert parse_reference("a").source == "a"

    def test_template_references(self):
        assert template_references("x {{ a.b }} y {{c}}") == [Reference("a", "b"), Reference("c", "")]
        assert template_references("no refs") == []
        with pytest.raises(ReferenceError_):
            template_references(["not", "a", "string"])

    def test_find_references_walks_nested_values(self):
        value = {"k": [{"$ref": "a.x"}, {"deep": {"$template": "{{ b }}-{{ c.y }}"}}], "lit": 1}
        assert find_references(value) == [Reference("a", "x"), Reference("b", ""), Reference("c", "y")]
        assert find_references([1, "two", None]) == []

    def test_find_references_rejects_mixed_objects(self):
        with pytest.raises(ReferenceError_):
            find_references({"$ref": "a", "other": 1})

    def test_is_reference(self):
        assert is_reference({"$ref": "a"}) and is_reference({"$template": "x"})
        assert not is_reference({"$ref": "a", "x": 1}) and not is_reference("a") and not is_reference({})


class TestGraph:
    def test_topological_order_respects_dependencies_and_breaks_ties_by_name(self):
        preds = {"d": {"b", "c"}, "c": {"a"}, "b": {"a"}, "a": set(), "e": set()}
        assert topological_order(preds) == ["a", "b", "c", "d", "e"]

    def test_topological_order_raises_on_a_cycle(self):
        with pytest.raises(ValueError):
            topological_order({"a": {"b"}, "b": {"a"}})

    def test_find_cycle(self):
        assert find_cycle({"a": set(), "b": {"a"}}) is None
        assert find_cycle({"a": {"a"}}) == ["a", "a"]
        assert find_cycle({"x": set(), "a": {"c"}, "b": {"a"}, "c": {"b"}}) == ["a", "b", "c", "a"]

    def test_unknown_predecessors_are_ignored(self):
        assert find_cycle({"a": {"ghost"}}) is None
        assert topological_order({"a": {"ghost"}}) == ["a"]

    def test_ancestors_are_transitive(self):
        preds = {"a": set(), "b": {"a"}, "c": {"b"}, "d": set()}
        assert ancestors(preds) == {"a": frozenset(), "b": {"a"}, "c": {"a", "b"}, "d": frozenset()}


NAMES = [f"t{i}" for i in range(8)]


@st.composite
def graphs(draw) -> dict[str, set[str]]:
    names = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=len(NAMES), unique=True))
    return {name: set(draw(st.lists(st.sampled_from(names), max_size=4))) for name in names}


@st.composite
def dags(draw) -> dict[str, set[str]]:
    """Acyclic by construction: each task depends only on tasks earlier in a random order."""
    names = draw(st.permutations(NAMES))[: draw(st.integers(1, len(NAMES)))]
    return {name: set(draw(st.lists(st.sampled_from(names[:i]), max_size=3))) if i else set()
            for i, name in enumerate(names)}


class TestGraphProperties:
    @hypothesis_settings(max_examples=300, deadline=None)
    @given(graphs())
    def test_find_cycle_finds_a_cycle_iff_topological_order_raises(self, preds):
        cycle = find_cycle(preds)
        try:
            topological_order(preds)
            raised = False
        except ValueError:
            raised = True
        assert (cycle is not None) == raised
        if cycle is not None:
            # A real cycle in execution order: each task runs before the next, back to the start.
            assert cycle[0] == cycle[-1] and len(cycle) >= 2
            assert len(set(cycle[:-1])) == len(cycle) - 1
            for before, after in zip(cycle, cycle[1:]):
                assert before in preds[after]

    @hypothesis_settings(max_examples=200, deadline=None)
    @given(dags())
    def test_order_and_ancestors_of_dags(self, preds):
        assert find_cycle(preds) is None
        order = topological_order(preds)
        assert sorted(order) == sorted(preds)
        position = {name: i for i, name in enumerate(order)}
        for name, before in preds.items():
            assert all(position[p] < position[name] for p in before)
        closure = ancestors(preds)
        for name in preds:
            expected, stack = set(), list(preds[name])
            while stack:
                node = stack.pop()
                if node not in expected:
                    expected.add(node)
                    stack.extend(preds[node])
            assert closure[name] == expected

    @hypothesis_settings(max_examples=100, deadline=None)
    @given(graphs())
    def test_parse_definition_reports_a_cycle_iff_there_is_one(self, preds):
        tasks = {name: {"type": "fail", "execute_after": {p: ["completed", "failed"] for p in before if p != name}}
                 for name, before in preds.items()}
        effective = {name: {p for p in before if p != name} for name, before in preds.items()}
        has_cycle = find_cycle(effective) is not None
        try:
            parse(tasks)
            assert not has_cycle
        except DefinitionInvalid as exc:
            assert has_cycle
            assert list(exc.errors) == ["tasks"] and "cycle" in exc.errors["tasks"][0]


def blanks_of(tasks) -> tuple[Blank, ...]:
    return parse(tasks).blanks


INPUT_TASKS = {
    "fetch": {"type": "http_request", "body": {"url": None, "timeout": None}},
    "mail": {"type": "send_email", "integration": SMTP_ID, "body": {"subject": "s", "to": None}},
}


class TestInputs:
    def test_example_input(self):
        example = example_input(blanks_of(INPUT_TASKS))
        assert example == {"fetch": {"url": "https://example.com/api", "timeout": 30},
                           "mail": {"to": "someone@example.com"}}

    def test_schema_validates_the_example(self):
        blanks = blanks_of(INPUT_TASKS)
        schema = input_schema(blanks)
        jsonschema.Draft202012Validator.check_schema(schema)
        jsonschema.validate(example_input(blanks), schema)
        assert schema["properties"]["fetch"]["required"] == ["url"]
        assert schema["properties"]["fetch"]["properties"]["timeout"]["maximum"] == 600
        assert sorted(schema["required"]) == ["fetch", "mail"]

    def test_optional_only_task_is_not_required(self):
        schema = input_schema(blanks_of({"f": {"type": "fail", "body": {"message": None}}}))
        assert schema["required"] == [] and schema["properties"]["f"]["required"] == []

    def test_check_input_accepts_the_example(self):
        blanks = blanks_of(INPUT_TASKS)
        assert check_input(blanks, example_input(blanks)) == {}

    def test_optional_blank_may_be_left_out(self):
        blanks = blanks_of(INPUT_TASKS)
        assert check_input(blanks, {"fetch": {"url": "https://a.example"}, "mail": {"to": ["a@b.c"]}}) == {}

    def test_check_input_names_task_and_field(self):
        blanks = blanks_of(INPUT_TASKS)
        problems = check_input(blanks, {"fetch": {"url": 3, "extra": 1}, "ghost": {}, "mail": "x"})
        assert set(problems) == {"fetch.url", "fetch.extra", "ghost", "mail", "mail.to"}
        assert "string" in problems["fetch.url"][0]

    def test_missing_required_blank(self):
        problems = check_input(blanks_of(INPUT_TASKS), {"fetch": {"url": None}})
        assert problems == {"fetch.url": ["This field is required."], "mail.to": ["This field is required."]}

    def test_constraints_are_checked(self):
        problems = check_input(blanks_of(INPUT_TASKS), {"fetch": {"url": "x", "timeout": 0}, "mail": {"to": "a"}})
        assert list(problems) == ["fetch.timeout"]

    def test_body_must_be_an_object(self):
        assert list(check_input(blanks_of(INPUT_TASKS), ["x"])) == ["non_field_errors"]
