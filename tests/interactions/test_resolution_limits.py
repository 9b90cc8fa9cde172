"""Resolving a task's body within ResolveLimits (interactions/engine/execution.py): references
and templates cannot amplify a value past the limits."""
from __future__ import annotations

import pytest
from jmespath.exceptions import JMESPathError

from interactions.engine.definition import TaskSpec
from interactions.engine.execution import Record, ResolveLimits, resolve_body
from tasks_catalog.expressions import ExpressionTooCostly

RECORDS = {"a": Record("completed", {"text": "x" * 1000, "items": list(range(10))})}
LIMITS = ResolveLimits(max_steps=100_000, max_text_bytes=64 * 1024, max_body_bytes=256 * 1024, max_depth=16)
DOUBLE = "|".join(["[@,@]"] * 30)


def resolve(value, limits=LIMITS):
    spec = TaskSpec(name="t", type="fail", body={"message": value})
    return resolve_body(spec, {"message": None}, {}, RECORDS, limits=limits)["message"]


def test_references_and_templates_resolve_within_the_limits():
    assert resolve({"$ref": "a.items[0]"}) == 0
    assert resolve({"$template": "n={{ a.items[1] }} {{ a.items[:2] }}"}) == "n=1 [0,1]"


@pytest.mark.parametrize("value", [
    {"$ref": f"a.text | {DOUBLE}"},                                   # a shared value, too large as JSON
    {"$template": "{{ a.text }}" * 100},                              # 100 KB of text from 1 KB
    {"$template": f"{{{{ a.text | {DOUBLE} }}}}"},                    # a template encoding a doubling
    {"$ref": "a.items" + "|[@]" * 40},                                # deeper than max_depth
    {"$ref": "a.text | " + "|".join(["join('', [@,@])"] * 20)},       # join past max_text_bytes
    [{"$ref": "a.text"}] * 300,                                       # many references to one output
])
def test_amplifying_references_fail_as_jmespath_errors(value):
    with pytest.raises(ExpressionTooCostly) as raised:
        resolve(value)
    # The executor turns JMESPath errors into the task's failure: "a reference could not be resolved".
    assert isinstance(raised.value, JMESPathError)


def test_the_step_budget_is_shared_by_the_whole_body():
    value = [{"$ref": "a.items[*] | [@,@][] | [@,@][] | [@,@][]"}] * 200
    with pytest.raises(ExpressionTooCostly, match="steps"):
        resolve(value, ResolveLimits(max_steps=5_000, max_body_bytes=10**9))
