"""Bounded JSON (config/jsonsize.py): encoding stops at the limit, parsing at the depth."""
from __future__ import annotations

import json
import time

import pytest
from hypothesis import given, settings, strategies as st

from config.jsonsize import (
    JsonTooDeep,
    JsonTooLarge,
    NotJson,
    check_bounded,
    encode_bounded,
    json_depth,
    loads_bounded,
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=5), children, max_size=5),
    max_leaves=30,
)


def compact(value) -> str:
    return json.dumps(value, separators=(",", ":"), allow_nan=False)


@given(value=json_values, limit=st.integers(min_value=0, max_value=400))
@settings(max_examples=300, deadline=None)
def test_encodes_as_json_dumps_or_refuses_exactly_past_the_limit(value, limit):
    expected = compact(value)
    if len(expected) <= limit:
        assert encode_bounded(value, limit) == expected
    else:
        with pytest.raises(JsonTooLarge):
            encode_bounded(value, limit)


def test_a_shared_value_doubled_60_times_is_refused_without_expanding_it():
    value = "x" * 1000
    for _ in range(60):
        value = [value, value]  # 2**60 KB when encoded; 60 small lists in memory
    started = time.monotonic()
    with pytest.raises(JsonTooLarge):
        encode_bounded(value, 1024 * 1024)
    assert time.monotonic() - started < 0.5


def test_a_flat_list_repeating_one_long_string_is_refused_before_encoding():
    with pytest.raises(JsonTooLarge):
        encode_bounded(["x" * 1_000_000] * 10_000, 1024 * 1024)


def test_shared_values_within_the_limit_encode_in_full():
    inner = {"a": [1, 2]}
    assert encode_bounded([inner, inner], 100) == '[{"a":[1,2]},{"a":[1,2]}]'


@pytest.mark.parametrize("bad", [float("nan"), [float("inf")], {1, 2}, {"a": object()}, {(1, 2): 3}])
def test_what_json_cannot_hold_is_refused(bad):
    with pytest.raises(NotJson):
        encode_bounded(bad, 1000)


def test_a_cycle_is_refused():
    cycle: list = []
    cycle.append(cycle)
    with pytest.raises(NotJson):
        encode_bounded(cycle, 1000)


def test_depth_is_bounded_while_encoding():
    value: list = []
    for _ in range(5000):
        value = [value]
    with pytest.raises(JsonTooDeep):
        encode_bounded(value, 10**9, max_depth=64)
    with pytest.raises(JsonTooDeep):
        check_bounded(value, 10**9, max_depth=64)


def test_json_depth():
    assert json_depth(1, 10) == 0
    assert json_depth({"a": [1, {"b": []}]}, 10) == 4
    with pytest.raises(JsonTooDeep):
        json_depth([[[[]]]], 3)


@pytest.mark.parametrize("text", ["[" * 100_000 + "]" * 100_000, '{"a":' * 3000 + "1" + "}" * 3000,
                                  "[" * 65 + "]" * 65])
def test_parsing_refuses_nesting_past_the_limit(text):
    with pytest.raises(JsonTooDeep):
        loads_bounded(text, max_depth=64)


def test_parsing_within_the_limit():
    assert loads_bounded("[" * 64 + "]" * 64, max_depth=64) is not None
    assert loads_bounded('{"a": "[[[[[["}', max_depth=3) == {"a": "[[[[[["}
    with pytest.raises(ValueError):
        loads_bounded("{not json", max_depth=64)
