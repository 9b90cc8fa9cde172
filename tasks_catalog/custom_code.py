"""The `code` task type: user Python run in a sandbox (see tasks_catalog/sandbox.py)."""
from __future__ import annotations

from typing import Any

from config.queues import Queue
from tasks_catalog.base import TaskContext, TaskType
from tasks_catalog.fields import FieldSpec
from tasks_catalog.sandbox import run_in_sandbox


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
    queue = Queue.CODE
    slow = True

    def run(self, body: dict[str, Any], context: TaskContext) -> Any:
        """Return what main(inputs) returns; raise TaskFailed with its traceback or the limit hit.

        Never runs the code outside the sandbox: when it cannot be set up, the task is refused.
        """
        return run_in_sandbox(code=body["code"], inputs=body.get("inputs") or {}, timeout=context.timeout)
