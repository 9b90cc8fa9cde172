"""Bounded JSON: parse with a nesting limit, measure depth, and encode with a size limit.

Framework-free (no Django): the request parser, the definition check, the test endpoint and
the executor's record path all use it, each passing its limits from settings.

Why not `json.dumps` and then `len()`: a value may share one sub-object many times (JMESPath's
`[@, @]` returns the same list twice), so a few kilobytes in memory can encode to gigabytes.
`encode_bounded` first adds up a lower bound of the encoded size over the object graph,
counting a shared container once per place it appears but walking it once, and stops as soon as
that passes the limit; only then does the C encoder run, on a value now known to be small.
Python's recursion limit is never reached: walks are iterative and depth is capped.
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

__all__ = [
    "JsonTooDeep", "JsonTooLarge", "NotJson", "BoundedJsonError",
    "check_bounded", "encode_bounded", "loads_bounded", "json_depth",
]


class BoundedJsonError(ValueError):
    """A value that cannot be encoded or parsed within the limits."""


class JsonTooLarge(BoundedJsonError):
    def __init__(self, limit: int) -> None:
        super().__init__(f"larger than {limit} bytes when encoded as JSON")
        self.limit = limit


class JsonTooDeep(BoundedJsonError):
    def __init__(self, limit: int) -> None:
        super().__init__(f"nested deeper than {limit} levels of arrays and objects")
        self.limit = limit


class NotJson(BoundedJsonError):
    """A value JSON cannot represent (a set, NaN, a cycle, a key that is not a string…)."""


_SCALARS = (str, int, float, bool, type(None))
_SCALAR_TYPES = frozenset(_SCALARS)
_CONTAINERS = frozenset((dict, list, tuple))


def json_depth(value: Any, limit: int) -> int:
    """Return the nesting depth of `value` (a scalar is 0); raise JsonTooDeep past `limit`.

    Iterative, and it walks a container shared by several parents once per parent only as
    long as it stays within `limit` levels: cost is bounded by the number of nodes reached.
    """
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    seen: dict[int, int] = {}
    while stack:
        item, depth = stack.pop()
        children: Iterable[Any]
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, (list, tuple)):
            children = item
        else:
            continue
        depth += 1
        if depth > limit:
            raise JsonTooDeep(limit)
        if seen.get(id(item), -1) >= depth:
            continue  # already walked at this depth or deeper
        seen[id(item)] = depth
        deepest = max(deepest, depth)
        stack.extend((child, depth) for child in children if isinstance(child, (dict, list, tuple)))
    return deepest


def loads_bounded(text: str | bytes, *, max_depth: int, **options: Any) -> Any:
    """Parse JSON; raise JsonTooDeep past `max_depth`, ValueError for malformed text.

    Brackets are counted on the raw text before parsing (a cheap upper bound of the depth):
    only a body with more than `max_depth` of them is parsed and then measured, and one nested
    past Python's recursion limit is refused instead of raising RecursionError. `options`
    go to `json.loads`.
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    if text.count("[") + text.count("{") > max_depth:
        try:
            value = json.loads(text, **options)
        except RecursionError:
            raise JsonTooDeep(max_depth) from None
        json_depth(value, max_depth)
        return value
    return json.loads(text, **options)


def _size_floor(value: Any, *, limit: int, max_depth: int) -> int:
    """Return a lower bound of len(json.dumps(value)); raise as soon as it passes `limit`.

    A container reached through several parents is measured once and counted at each place
    (memoised by identity), so shared structures cost their real size to walk, not their
    expanded size. Raises NotJson for a cycle or a non-JSON type, JsonTooDeep past `max_depth`.
    """
    if not isinstance(value, (dict, list, tuple)):
        if not isinstance(value, _SCALARS):
            raise NotJson(f"a value of type {type(value).__name__}")
        return _scalar_floor(value)
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    keep_alive: list[Any] = []  # ids are unique only while their objects live
    # Post-order walk. First visit: measure the scalars, queue the containers; second visit
    # (`own` is set): add the containers' sizes.
    stack: list[tuple[Any, int, int | None, list[Any] | None]] = [(value, 1, None, None)]
    while stack:
        item, depth, own, nested = stack.pop()
        key = id(item)
        if own is not None:
            on_path.discard(key)
            for child in nested or ():
                own += sizes[id(child)]
            if own > limit:
                raise JsonTooLarge(limit)
            sizes[key] = own
            continue
        if key in sizes:
            continue
        if key in on_path:
            raise NotJson("a circular reference")
        if depth > max_depth:
            raise JsonTooDeep(max_depth)
        values = item.values() if isinstance(item, dict) else item
        kinds = set(map(type, values))
        if not kinds & _CONTAINERS and kinds <= _SCALAR_TYPES:
            # Flat: the C encoder measures it exactly. Only strings repeated by reference can
            # make its text larger than its memory, so they are added up first.
            if str in kinds and sum(map(len, (v for v in values if type(v) is str))) > limit:
                raise JsonTooLarge(limit)
            try:
                own = len(json.dumps(item, separators=(",", ":"), allow_nan=False))
            except (TypeError, ValueError) as exc:
                raise NotJson(str(exc)) from None
            if own > limit:
                raise JsonTooLarge(limit)
            sizes[key] = own
            keep_alive.append(item)
            continue
        on_path.add(key)
        keep_alive.append(item)
        own = 2 + max(len(item) - 1, 0)  # brackets and commas
        if isinstance(item, dict):
            for k in item:
                if type(k) is str:
                    own += len(k) + 3
                elif isinstance(k, (int, float, bool, type(None))):
                    own += 3 + _scalar_floor(k)
                else:
                    raise NotJson(f"an object key of type {type(k).__name__}")
            children = item.values()
        else:
            children = item
        nested = []
        for child in children:
            kind = type(child)
            if kind is str:
                own += len(child) + 2
            elif kind is dict or kind is list or kind is tuple:
                nested.append(child)
            elif isinstance(child, _SCALARS):
                own += _scalar_floor(child)
            else:
                raise NotJson(f"a value of type {kind.__name__}")
        if own > limit:
            raise JsonTooLarge(limit)
        stack.append((item, depth, own, nested))
        stack.extend((child, depth + 1, None, None) for child in nested if id(child) not in sizes)
    return sizes[id(value)]


def _scalar_floor(value: Any) -> int:
    if isinstance(value, str):
        return len(value) + 2  # exact unless characters need escapes (at most 6 each)
    if value is None or value is True:
        return 4
    if value is False:
        return 5
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        raise NotJson(f"{value!r} is not a JSON number")
    try:
        return len(repr(value))
    except ValueError as exc:  # an int past Python's digit limit for str()
        raise NotJson(str(exc)) from None


def check_bounded(value: Any, limit: int, *, max_depth: int = 256) -> int:
    """Return a lower bound of `value`'s encoded size without encoding it.

    Raises JsonTooLarge past `limit`, JsonTooDeep past `max_depth`, NotJson as encode_bounded.
    Cost: one walk of the value as it is in memory (shared parts once).
    """
    floor = _size_floor(value, limit=limit, max_depth=max_depth)
    if floor > limit:
        raise JsonTooLarge(limit)
    return floor


def encode_bounded(value: Any, limit: int, *, max_depth: int = 256, sort_keys: bool = False) -> str:
    """Return `value` as compact JSON (`json.dumps(..., separators=(",", ":"))`).

    Raises JsonTooLarge as soon as the encoding is known to pass `limit` characters (before
    building it), JsonTooDeep past `max_depth` levels, NotJson for what JSON cannot hold
    (NaN and infinities included).
    """
    floor = _size_floor(value, limit=limit, max_depth=max_depth)
    if floor > limit:
        raise JsonTooLarge(limit)
    # The floor is within the limit and exact but for string escapes, so the text is at most
    # 6x the limit: safe to build.
    try:
        text = json.dumps(value, separators=(",", ":"), allow_nan=False, sort_keys=sort_keys)
    except (TypeError, ValueError) as exc:
        raise NotJson(str(exc)) from None
    if len(text) > limit:
        raise JsonTooLarge(limit)
    return text
