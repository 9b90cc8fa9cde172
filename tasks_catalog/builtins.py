"""The built-in task types (SPEC §2.2).

The simple types live here; those that talk to the outside world (`http_request`,
`send_tweet`, `send_email`, `code`) have a module each.
"""
from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from jmespath.exceptions import JMESPathError

from tasks_catalog.base import TaskContext, TaskFailed, TaskType, check_output
from tasks_catalog.custom_code import Code
from tasks_catalog.send_email import SendEmail
from tasks_catalog.fields import FieldSpec
from tasks_catalog.http_request import HttpRequest
from tasks_catalog.expressions import search
from tasks_catalog.send_tweet import SendTweet


def _search(expression: str, data: Any, context: TaskContext) -> Any:
    """Evaluate within the expression budget and the task's timeout (expressions.py)."""
    from config.bounds import expression_budget

    try:
        return search(expression, data, max_length=settings.JUNCTION_MAX_EXPRESSION_LENGTH,
                      budget=expression_budget(timeout=context.timeout))
    except JMESPathError as exc:
        raise TaskFailed(f"expression failed: {exc}") from None


def _bounded(output: Any) -> Any:
    """Return the output once it is known to encode within the output limit (see check_output)."""
    check_output(output, limit=settings.JUNCTION_MAX_OUTPUT_BYTES, max_depth=settings.JUNCTION_MAX_JSON_DEPTH)
    return output


def _expression_fields() -> tuple[FieldSpec, ...]:
    return (
        FieldSpec("data", "any", required=True, description="The input data."),
        FieldSpec("expression", "expression", required=True,
                  max_length=settings.JUNCTION_MAX_EXPRESSION_LENGTH,
                  description="A JMESPath expression (at most JUNCTION_MAX_EXPRESSION_LENGTH characters)."),
    )


class Transform(TaskType):
    key = "transform"
    pure = True
    name = "Transform (JMESPath)"
    description = "Evaluate a JMESPath expression against data; the result is the output."
    output_description = "The expression's result."

    @property
    def fields(self) -> tuple[FieldSpec, ...]:  # type: ignore[override]
        return _expression_fields()

    def run(self, body: dict[str, Any], context: TaskContext) -> Any:
        return _bounded(_search(body["expression"], body["data"], context))


class Condition(TaskType):
    key = "condition"
    pure = True
    name = "Condition (JMESPath)"
    description = (
        "Evaluate a JMESPath expression: the task completes when the result is truthy and fails "
        "otherwise, so that completed/failed edges branch on it."
    )
    output_description = "The expression's value."
    output_schema = {"type": "object", "properties": {"value": {}}}

    @property
    def fields(self) -> tuple[FieldSpec, ...]:  # type: ignore[override]
        return _expression_fields()

    def run(self, body: dict[str, Any], context: TaskContext) -> Any:
        value = _search(body["expression"], body["data"], context)
        # JMESPath truthiness: false, null, "", [] and {} are false; 0 is true.
        if value is None or value is False or value in ("", [], {}):
            raise TaskFailed(f"condition is false (value: {value!r})")
        return _bounded({"value": value})


class Delay(TaskType):
    key = "delay"
    timer = True  # the executor schedules the end; `run` (the test endpoint) really sleeps
    name = "Delay"
    description = "Wait a number of seconds (at most JUNCTION_MAX_DELAY)."
    output_description = "An empty object."
    output_schema = {"type": "object"}

    @property
    def fields(self) -> tuple[FieldSpec, ...]:  # type: ignore[override]
        return (
            FieldSpec("seconds", "number", required=True, minimum=0,
                      maximum=settings.JUNCTION_MAX_DELAY, description="Seconds to wait."),
        )

    def wait_seconds(self, body: dict[str, Any]) -> float:
        return float(body["seconds"])

    def run(self, body: dict[str, Any], context: TaskContext) -> Any:
        # The task's timeout bounds the wait wherever it runs: a prefork worker's soft time
        # limit would stop it there, but a thread (the embedded worker, the test endpoint) has
        # none. Same outcome and message as the executor's timeout.
        if context.timeout is not None and body["seconds"] > context.timeout:
            time.sleep(context.timeout)
            raise TaskFailed(f"timed out after {context.timeout:g} s")
        time.sleep(body["seconds"])
        return {}


class Fail(TaskType):
    key = "fail"
    pure = True
    name = "Fail"
    description = "Always fail with the given message; for error paths and tests."
    fields = (FieldSpec("message", "string", default="failed", description="The error."),)
    output_description = "None: the task always fails."

    def run(self, body: dict[str, Any], context: TaskContext) -> Any:
        raise TaskFailed(body["message"])


BODYLESS_STATUSES = (204, 304)


class HttpResponse(TaskType):
    key = "response"
    replies = True
    pure = True
    name = "Response"
    description = "Define the HTTP response of a waited call (Prefer: wait=N)."
    fields = (
        # 1xx are not final responses: sent as one, the client would wait for another.
        FieldSpec("status_code", "integer", default=200, minimum=200, maximum=599,
                  description="HTTP status (200-599; 204 and 304 carry no body)."),
        FieldSpec("body", "any", description="The response body (JSON)."),
        FieldSpec("headers", "headers", default={},
                  description="Extra response headers: names to string values, no CR/LF, no "
                  "framing or hop-by-hop headers (Connection, Content-Length, Transfer-Encoding…)."),
    )
    output_description = "The response: status_code, headers and body."
    output_schema = {
        "type": "object",
        "properties": {"status_code": {"type": "integer"}, "headers": {"type": "object"}, "body": {}},
    }

    def run(self, body: dict[str, Any], context: TaskContext) -> Any:
        # The body's fields were checked as values (headers included) by `check_body`, after
        # references were resolved; what remains is the rule across two fields.
        if body["status_code"] in BODYLESS_STATUSES and body.get("body") is not None:
            raise TaskFailed(f"a {body['status_code']} response has no body: leave `body` out (null)")
        return _bounded({"status_code": body["status_code"], "headers": body["headers"], "body": body.get("body")})


BUILTIN_TASK_TYPES: list[type[TaskType]] = [
    HttpRequest, SendTweet, SendEmail, Code, Transform, Condition, Delay, Fail, HttpResponse,
]
