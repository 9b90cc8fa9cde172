"""The limits in settings, as the framework-free modules take them (docs/limits.md).

The engine (`interactions/engine/`), the expression evaluator (`tasks_catalog/expressions.py`)
and the JSON bounds (`config/jsonsize.py`) read no settings; their callers build their limits
here, so that every path — a run's worker, the test endpoint, a definition's validation — uses
the same numbers.
"""
from __future__ import annotations

import time

from django.conf import settings

from interactions.engine.definition import Limits
from interactions.engine.execution import ResolveLimits
from tasks_catalog.expressions import Budget


def expression_budget(*, timeout: float | None = None) -> Budget:
    """The budget of one JMESPath evaluation by a task type (`transform`, `condition`)."""
    return Budget(
        max_steps=settings.JUNCTION_MAX_EXPRESSION_STEPS,
        max_bytes=settings.JUNCTION_MAX_OUTPUT_BYTES,
        deadline=time.monotonic() + timeout if timeout else None,
    )


def resolve_limits(*, timeout: float | None = None) -> ResolveLimits:
    """The limits of resolving one task's body (its `$ref`s and `$template`s)."""
    return ResolveLimits(
        max_steps=settings.JUNCTION_MAX_EXPRESSION_STEPS,
        max_text_bytes=settings.JUNCTION_MAX_OUTPUT_BYTES,
        max_body_bytes=settings.JUNCTION_MAX_SESSION_BYTES,
        max_depth=settings.JUNCTION_MAX_JSON_DEPTH,
        timeout=timeout,
    )


def definition_limits() -> Limits:
    """The limits a definition is validated against when it is saved."""
    return Limits(
        max_tasks=settings.JUNCTION_MAX_TASKS,
        max_retries=settings.JUNCTION_MAX_RETRIES,
        max_timeout=settings.JUNCTION_MAX_TASK_TIMEOUT,
        max_depth=settings.JUNCTION_MAX_JSON_DEPTH,
        max_expression_length=settings.JUNCTION_MAX_EXPRESSION_LENGTH,
        max_template_length=settings.JUNCTION_MAX_TEMPLATE_LENGTH,
        max_template_placeholders=settings.JUNCTION_MAX_TEMPLATE_PLACEHOLDERS,
    )
