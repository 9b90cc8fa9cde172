"""The `http_request` task type: an HTTP call, guarded against SSRF."""
from __future__ import annotations

from typing import Any

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
