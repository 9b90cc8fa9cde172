"""The built-in task types (SPEC §2.2).

Types that talk to the outside world (`http_request`, `send_tweet`, `send_email`, `code`)
describe themselves here; their `run` lives beside them once implemented.
"""
from __future__ import annotations

import time
from typing import Any

import jmespath
from django.conf import settings

from tasks_catalog.base import TaskContext, TaskFailed, TaskType
from tasks_catalog.fields import FieldSpec

HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")


class HttpRequest(TaskType):
    key = "http_request"
    name = "HTTP request"
    description = (
        "Send an HTTP request. A status outside ok_statuses fails the task. Private, loopback "
        "and link-local addresses are refused unless JUNCTION_SSRF_ALLOWED_NETWORKS allows them."
    )
    fields = (
        FieldSpec("method", "string", default="GET", choices=HTTP_METHODS, description="HTTP method."),
        FieldSpec("url", "string", required=True, min_length=1, max_length=2048,
                  description="An http or https URL.", example="https://example.com/api"),
        FieldSpec("headers", "object", default={}, description="Request headers."),
        FieldSpec("query", "object", default={}, description="Query-string parameters."),
        FieldSpec("json", "any", description="A JSON request body."),
        FieldSpec("timeout", "number", default=30, minimum=0.1, maximum=600, description="Seconds."),
        FieldSpec("ok_statuses", "array", items="integer",
                  description="Statuses that count as success; default 200-299."),
    )
    output_description = "The response: status code, headers, and the body (parsed when JSON)."
    output_schema = {
        "type": "object",
        "properties": {
            "status_code": {"type": "integer"},
            "headers": {"type": "object"},
            "body": {},
        },
    }


class SendTweet(TaskType):
    key = "send_tweet"
    name = "Send tweet"
    description = "Post a tweet with a Twitter/X integration (tweepy, OAuth 1.0a)."
    provider = "twitter"
    fields = (
        FieldSpec("text", "string", required=True, min_length=1, max_length=280,
                  description="The tweet, 1-280 characters.", example="Hello from Junction"),
    )
    output_description = "The created tweet."
    output_schema = {
        "type": "object",
        "properties": {"id": {"type": "string"}, "text": {"type": "string"}},
    }


class SendEmail(TaskType):
    key = "send_email"
    name = "Send e-mail"
    description = "Send an e-mail through an SMTP integration."
    provider = "smtp"
    fields = (
        FieldSpec("to", "string_or_list", required=True, description="Recipient(s)."),
        FieldSpec("subject", "string", required=True, max_length=998, description="Subject line."),
        FieldSpec("text", "string", default="", description="Plain-text body."),
        FieldSpec("html", "string", default="", description="HTML body (optional)."),
    )
    output_description = "The Message-ID of the sent message."
    output_schema = {"type": "object", "properties": {"message_id": {"type": "string"}}}


class Code(TaskType):
    key = "code"
    name = "Custom code"
    description = (
        "Run Python source that defines main(inputs) in a sandbox: a separate process with CPU, "
        "memory, time and output limits, no network, no secrets, a read-only filesystem."
    )
    fields = (
        FieldSpec("code", "string", required=True, min_length=1, max_length=100_000,
                  description="Python source defining main(inputs).",
                  example="def main(inputs):\n    return {'sum': sum(inputs.get('numbers', []))}\n"),
        FieldSpec("inputs", "object", default={}, description="Passed to main() as its argument."),
    )
    output_description = "Whatever main() returns (JSON-serialisable)."
    queue = "code"


def _search(expression: str, data: Any) -> Any:
    try:
        return jmespath.search(expression, data)
    except jmespath.exceptions.JMESPathError as exc:
        raise TaskFailed(f"expression failed: {exc}") from None


class Transform(TaskType):
    key = "transform"
    name = "Transform (JMESPath)"
    description = "Evaluate a JMESPath expression against data; the result is the output."
    fields = (
        FieldSpec("data", "any", required=True, description="The input data."),
        FieldSpec("expression", "expression", required=True, description="A JMESPath expression."),
    )
    output_description = "The expression's result."

    def run(self, body: dict[str, Any], context: TaskContext) -> Any:
        return _search(body["expression"], body["data"])


class Condition(TaskType):
    key = "condition"
    name = "Condition (JMESPath)"
    description = (
        "Evaluate a JMESPath expression: the task completes when the result is truthy and fails "
        "otherwise, so that completed/failed edges branch on it."
    )
    fields = Transform.fields
    output_description = "The expression's value."
    output_schema = {"type": "object", "properties": {"value": {}}}

    def run(self, body: dict[str, Any], context: TaskContext) -> Any:
        value = _search(body["expression"], body["data"])
        # JMESPath truthiness: false, null, "", [] and {} are false; 0 is true.
        if value is None or value is False or value in ("", [], {}):
            raise TaskFailed(f"condition is false (value: {value!r})")
        return {"value": value}


class Delay(TaskType):
    key = "delay"
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

    def run(self, body: dict[str, Any], context: TaskContext) -> Any:
        time.sleep(body["seconds"])
        return {}


class Fail(TaskType):
    key = "fail"
    name = "Fail"
    description = "Always fail with the given message; for error paths and tests."
    fields = (FieldSpec("message", "string", default="failed", description="The error."),)
    output_description = "None: the task always fails."

    def run(self, body: dict[str, Any], context: TaskContext) -> Any:
        raise TaskFailed(body["message"])


class HttpResponse(TaskType):
    key = "response"
    name = "Response"
    description = "Define the HTTP response of a waited call (Prefer: wait=N)."
    fields = (
        FieldSpec("status_code", "integer", default=200, minimum=100, maximum=599,
                  description="HTTP status."),
        FieldSpec("body", "any", description="The response body (JSON)."),
        FieldSpec("headers", "object", default={}, description="Extra response headers."),
    )
    output_description = "The response: status_code, headers and body."
    output_schema = {
        "type": "object",
        "properties": {"status_code": {"type": "integer"}, "headers": {"type": "object"}, "body": {}},
    }

    def run(self, body: dict[str, Any], context: TaskContext) -> Any:
        return {"status_code": body["status_code"], "headers": body["headers"], "body": body.get("body")}


BUILTIN_TASK_TYPES: list[type[TaskType]] = [
    HttpRequest, SendTweet, SendEmail, Code, Transform, Condition, Delay, Fail, HttpResponse,
]
