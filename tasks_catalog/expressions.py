"""JMESPath with bounded cost: compile with a length cap, evaluate within a step budget.

A JMESPath expression is code run on the server, and a short one can ask for exponential work:
`[@,@]|[@,@]|…` doubles a value per step (cheap in memory, the lists are shared, but every
consumer that walks it — `==`, `contains`, `to_string`, the JSON encoder — pays the expanded
size), and `join('', [@,@])|join('', [@,@])|…` or `[@,@][]|[@,@][]|…` doubles real memory. So
every evaluation here runs against a `Budget`:

- each AST node visited costs one step, and so does each item produced by a flatten or a
  slice, each item (or 64 characters) of each function argument, and each node compared by
  `==`/`!=`/`contains` (an identity check stops at shared sub-values);
- `join` and `to_string` may not make a string longer than `max_bytes`;
- past `max_steps`, or past the deadline, evaluation stops with ExpressionTooCostly.

ExpressionTooCostly and ExpressionInvalid subclass JMESPathError, so callers that already turn
JMESPath errors into a task failure report them too. Pure: no Django (callers pass limits).
"""
from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from jmespath import functions, parser, visitor
from jmespath.exceptions import JMESPathError

from config.jsonsize import BoundedJsonError, encode_bounded

# Defaults equal to the settings' defaults (config/settings.py); callers pass the settings.
DEFAULT_MAX_LENGTH = 1024
DEFAULT_MAX_STEPS = 1_000_000
DEFAULT_MAX_BYTES = 1024 * 1024
# Expressions longer than this are never handed to the parser, whatever the caller's limit
# (the hard maximum of JUNCTION_MAX_EXPRESSION_LENGTH).
HARD_MAX_LENGTH = 16384


class ExpressionInvalid(JMESPathError):
    """The expression cannot be compiled (syntax, length, nesting)."""


class ExpressionTooCostly(JMESPathError):
    """The evaluation went past its step budget, its deadline or its size limit."""


def compile_expression(expression: str, *, max_length: int = DEFAULT_MAX_LENGTH) -> parser.ParsedResult:
    """Compile `expression`; raise ExpressionInvalid naming the problem."""
    if not isinstance(expression, str):
        raise ExpressionInvalid("an expression must be a string")
    limit = min(max_length, HARD_MAX_LENGTH)
    if len(expression) > limit:
        raise ExpressionInvalid(f"the expression is {len(expression)} characters long; the limit is {limit}")
    try:
        return parser.Parser().parse(expression)
    except JMESPathError as exc:
        raise ExpressionInvalid(str(exc).splitlines()[0]) from None
    except RecursionError:
        raise ExpressionInvalid("the expression is nested too deeply") from None
    except ValueError as exc:  # a JSON literal the parser's json.loads refuses
        raise ExpressionInvalid(f"invalid literal: {exc}") from None


@dataclass
class Budget:
    """What one evaluation may spend; `spend` raises ExpressionTooCostly past it.

    A budget created inside `shared_budget()` also spends from the shared one, so that many
    evaluations in one request (fused tasks run by a call) are bounded together.
    """

    max_steps: int = DEFAULT_MAX_STEPS
    max_bytes: int = DEFAULT_MAX_BYTES
    deadline: float | None = None  # time.monotonic() value
    steps: int = field(default=0)
    parent: Budget | None = field(default_factory=lambda: _shared.get())

    def spend(self, steps: int) -> None:
        if self.parent is not None:
            self.parent.spend(steps)
        before = self.steps
        self.steps += steps
        if self.steps > self.max_steps:
            raise ExpressionTooCostly(
                f"the expression needs more than {self.max_steps} evaluation steps "
                f"(JUNCTION_MAX_EXPRESSION_STEPS)"
            )
        # Look at the clock every 1024 steps or so.
        if self.deadline is not None and (before >> 10) != (self.steps >> 10) and time.monotonic() > self.deadline:
            raise ExpressionTooCostly("the expression's evaluation ran out of time")


_shared: ContextVar[Budget | None] = ContextVar("junction_shared_expression_budget", default=None)


@contextmanager
def shared_budget(max_steps: int, *, timeout: float | None = None) -> Iterator[Budget]:
    """Bound every evaluation inside the block together: `max_steps` in all, and `timeout`.

    For a request that runs several tasks in its own process (fused tasks run by a `run` call):
    each task keeps its own budget, and all of them also spend from this one.
    """
    budget = Budget(max_steps=max_steps, deadline=time.monotonic() + timeout if timeout else None, parent=None)
    token = _shared.set(budget)
    try:
        yield budget
    finally:
        _shared.reset(token)


def _cost(value: Any) -> int:
    if isinstance(value, str):
        return len(value) // 64 + 1
    if isinstance(value, (list, dict)):
        return len(value) + 1
    return 1


def bounded_equal(left: Any, right: Any, budget: Budget, *, strict_top: bool = True) -> bool:
    """JMESPath equality (jmespath's `_equals`), paying one step per pair of nodes compared.

    As jmespath does, 0/1 never equal false/true at the top level (`strict_top`; `contains`
    compares as Python's `in`, without it), and nested values compare as Python compares them.
    """
    # A private helper of jmespath (pinned in requirements.txt), kept so that 0/1 compare as jmespath does.
    if strict_top and visitor._is_special_number_case(left, right):  # type: ignore[attr-defined]
        return False
    stack = [(left, right)]
    while stack:
        a, b = stack.pop()
        budget.spend(1)
        if a is b:
            continue
        if isinstance(a, list) and isinstance(b, list):
            if len(a) != len(b):
                return False
            stack.extend(zip(a, b))
        elif isinstance(a, dict) and isinstance(b, dict):
            if a.keys() != b.keys():
                return False
            budget.spend(len(a))
            stack.extend((a[k], b[k]) for k in a)
        elif isinstance(a, (list, dict)) or isinstance(b, (list, dict)):
            return False
        else:
            if isinstance(a, str) and isinstance(b, str):
                budget.spend(len(a) // 64)
            if a != b:
                return False
    return True


class _BoundedFunctions(functions.Functions):
    def __init__(self, budget: Budget) -> None:
        super().__init__()
        self._budget = budget

    def call_function(self, function_name, resolved_args):
        self._budget.spend(sum(_cost(arg) for arg in resolved_args))
        return super().call_function(function_name, resolved_args)

    @functions.signature({"types": []})
    def _func_to_string(self, arg):
        if isinstance(arg, str):
            return arg
        try:
            return encode_bounded(arg, self._budget.max_bytes)
        except BoundedJsonError as exc:
            raise ExpressionTooCostly(f"to_string(): the value is {exc}") from None

    @functions.signature({"types": ["string"]}, {"types": ["array-string"]})
    def _func_join(self, separator, array):
        size = sum(map(len, array)) + len(separator) * max(len(array) - 1, 0)
        if size > self._budget.max_bytes:
            raise ExpressionTooCostly(f"join(): the string would be longer than {self._budget.max_bytes} characters")
        self._budget.spend(size // 64)
        return separator.join(array)

    @functions.signature({"types": ["array", "string"]}, {"types": []})
    def _func_contains(self, subject, search):
        if isinstance(subject, str):
            return search in subject if isinstance(search, str) else False
        return any(bounded_equal(item, search, self._budget, strict_top=False) for item in subject)


class _BoundedInterpreter(visitor.TreeInterpreter):
    def __init__(self, budget: Budget) -> None:
        super().__init__(visitor.Options(custom_functions=_BoundedFunctions(budget)))
        self._budget = budget

    def visit(self, node, *args, **kwargs):
        self._budget.spend(1)
        return super().visit(node, *args, **kwargs)

    def visit_comparator(self, node, value):
        if node["value"] in ("eq", "ne"):
            left = self.visit(node["children"][0], value)
            right = self.visit(node["children"][1], value)
            equal = bounded_equal(left, right, self._budget)
            return equal if node["value"] == "eq" else not equal
        return super().visit_comparator(node, value)

    def visit_flatten(self, node, value):
        base = self.visit(node["children"][0], value)
        if not isinstance(base, list):
            return None
        self._budget.spend(sum(len(item) if isinstance(item, list) else 1 for item in base))
        merged: list[Any] = []
        for item in base:
            if isinstance(item, list):
                merged.extend(item)
            else:
                merged.append(item)
        return merged

    def visit_slice(self, node, value):
        if isinstance(value, list):
            self._budget.spend(len(value))
        return super().visit_slice(node, value)


def search(
    expression: str | parser.ParsedResult,
    data: Any,
    *,
    max_length: int = DEFAULT_MAX_LENGTH,
    budget: Budget | None = None,
) -> Any:
    """Evaluate `expression` against `data` within `budget`.

    Raises ExpressionInvalid (cannot compile), ExpressionTooCostly (over budget), or another
    JMESPathError (e.g. a function given the wrong type).
    """
    parsed = expression if isinstance(expression, parser.ParsedResult) else compile_expression(
        expression, max_length=max_length
    )
    interpreter = _BoundedInterpreter(budget or Budget())
    try:
        return interpreter.visit(parsed.parsed, data)
    except RecursionError:
        raise ExpressionTooCostly("the expression's evaluation nested too deeply") from None
