"""JMESPath within a budget (tasks_catalog/expressions.py): same answers, bounded cost."""
from __future__ import annotations

import time

import jmespath
import pytest
from hypothesis import given, settings, strategies as st

from tasks_catalog.expressions import (
    Budget,
    ExpressionInvalid,
    ExpressionTooCostly,
    compile_expression,
    search,
)

DOUBLE = "[@,@]"


def chain(step: str, times: int) -> str:
    return "|".join([step] * times)


AMPLIFIERS = {
    "nested doubling compared": f"[{chain(DOUBLE, 40)}, {chain(DOUBLE, 40)}] | @[0] == @[1]",
    "flatten doubling": chain("[@,@][]", 40),
    "join doubling": chain("join('', [@,@])", 40),
    "to_string of doubling": f"to_string({chain(DOUBLE, 40)})",
    "contains over doubling": f"contains([{chain(DOUBLE, 40)}], {chain(DOUBLE, 40)})",
    "slices of a flattened doubling": chain("[@,@][] | [::1]", 40),
    "sort of a flattened doubling": chain("[@,@][] | sort(@)", 40),
}


@pytest.mark.parametrize("expression", AMPLIFIERS.values(), ids=list(AMPLIFIERS))
def test_amplifying_expressions_stop_at_the_budget(expression):
    started = time.monotonic()
    with pytest.raises(ExpressionTooCostly):
        search(expression, "x" * 1000, max_length=4096, budget=Budget(max_steps=200_000))
    assert time.monotonic() - started < 5


def test_the_deadline_stops_an_evaluation():
    budget = Budget(max_steps=10**9, deadline=time.monotonic() + 0.2)
    started = time.monotonic()
    with pytest.raises(ExpressionTooCostly, match="time"):
        search(chain("[@,@][]", 40), 1, budget=budget)
    assert time.monotonic() - started < 2


def test_doubling_alone_is_cheap_the_consumer_pays():
    # The value is 2**40 leaves when expanded, 40 small lists in memory: returning it is fine;
    # whoever encodes it uses encode_bounded (the output limit).
    assert isinstance(search(chain(DOUBLE, 40), "x"), list)


@pytest.mark.parametrize("expression", ["(" * 5000 + "@" + ")" * 5000, "`" + "[" * 5000 + "]" * 5000 + "`",
                                        "a" * 2000, "a.[", ""])
def test_uncompilable_expressions_are_named_errors(expression):
    with pytest.raises(ExpressionInvalid):
        compile_expression(expression, max_length=1024 if len(expression) < 3000 else 20000)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-5, max_value=5) | st.sampled_from(["a", "b", ""]),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.sampled_from(["a", "b", "c"]), children, max_size=3),
    max_leaves=15,
)
EXPRESSIONS = [
    "a", "a.b", "[*].a", "a[?b == `1`]", "@ == @", "a != b", "contains(@, `1`)", "contains(a, 'x')",
    "to_string(@)", "join(',', [a, b][?type(@) == 'string'])", "[a, b][]", "a[::-1]", "length(@)",
    "[@, a] == [@, a]", "a == `[1, 2]`", "a == `[true, 2]`", "b == `0`", "a == `true`", "keys(@)",
    "sort_by(@, &to_string(@))", "contains(@, `[1]`)", "a == b", "@ == `{\"a\": 1}`",
]


@given(data=json_values, expression=st.sampled_from(EXPRESSIONS))
@settings(max_examples=400, deadline=None)
def test_answers_as_jmespath_does(data, expression):
    try:
        expected = jmespath.search(expression, data)
    except jmespath.exceptions.JMESPathError as exc:
        with pytest.raises(type(exc)):
            search(expression, data)
        return
    except TypeError:  # a jmespath bug (e.g. contains() of a number in a string): ours answers
        search(expression, data)
        return
    assert search(expression, data) == expected



def test_a_shared_budget_bounds_several_evaluations_together():
    from tasks_catalog.expressions import shared_budget

    expression = "[@,@][] | [@,@][] | [@,@][] | [@,@][] | [@,@][]"
    data = list(range(10))  # about 1300 steps each
    search(expression, data, budget=Budget(max_steps=10_000))  # one alone fits
    with shared_budget(5_000):
        with pytest.raises(ExpressionTooCostly):
            for _ in range(10):  # ten together do not
                search(expression, data, budget=Budget(max_steps=10_000))
    search(expression, data, budget=Budget(max_steps=10_000))  # outside, each alone again
