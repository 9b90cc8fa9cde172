"""The base class of task types.

To add a task type: subclass `TaskType` in a module of `tasks_catalog/`, give it a stable
`key`, its `fields` and `output` description, implement `run`, and add the class to
`BUILTIN_TASK_TYPES` in `tasks_catalog/builtins.py` (or register an instance from your own
app's `AppConfig.ready()` with `tasks_catalog.registry.task_types.register`). Nothing else
changes: validation, the catalog API, the endpoint's example body and the executor all read
the class.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from config.queues import Queue
from config.jsonsize import BoundedJsonError, JsonTooDeep, JsonTooLarge, check_bounded
from tasks_catalog.fields import FieldSpec, validate


class TaskFailed(Exception):
    """Raised by `TaskType.run` when the task fails; `transient` failures may be retried."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


def output_error(exc: BoundedJsonError) -> str:
    """The task error for an output `encode_bounded` refused (the words a run records)."""
    if isinstance(exc, JsonTooLarge):
        return f"output too large: more than {exc.limit} bytes"
    if isinstance(exc, JsonTooDeep):
        return f"output too deeply nested: more than {exc.limit} levels of arrays and objects"
    return f"output is not JSON: {exc}"


def check_output(output: Any, *, limit: int, max_depth: int) -> None:
    """Raise TaskFailed unless `output` encodes within `limit` bytes and `max_depth` levels.

    For task types whose output may share one value many times (JMESPath's `[@,@]`): measured
    without expanding it, so that whoever encodes it next (the record, a response) cannot be
    made to build gigabytes.
    """
    try:
        check_bounded(output, limit, max_depth=max_depth)
    except BoundedJsonError as exc:
        raise TaskFailed(output_error(exc)) from None


@dataclass(frozen=True)
class TaskContext:
    """What a running task may use besides its body: its timeout, and its integration's client.

    A task type never sees the integration's credentials: `client()` asks the provider
    (`Provider.client`) to build the client from them (a tweepy client, an SMTP connection
    through the SSRF guard), so secrets stay inside the provider and the client library.
    """

    timeout: float | None = None
    # Builds the integration's client (set by the executor); None for a task without one.
    connect: Callable[[float], Any] | None = field(default=None, repr=False)

    def client(self) -> Any:
        """Build the client of the task's integration; raise TaskFailed when it cannot be built."""
        from integrations.providers import ClientUnavailable

        if self.connect is None:
            raise TaskFailed("this task has no integration to build a client from")
        try:
            return self.connect(self.timeout or 30)
        except ClientUnavailable as exc:
            raise TaskFailed(str(exc), transient=exc.transient) from None


class TaskType:
    """A kind of task in the catalog. Instances are stateless and shared."""

    key: ClassVar[str]
    name: ClassVar[str]
    description: ClassVar[str] = ""
    provider: ClassVar[str | None] = None
    fields: tuple[FieldSpec, ...] = ()
    output_description: ClassVar[str] = ""
    output_schema: ClassVar[dict[str, Any]] = {}
    queue: ClassVar[str] = Queue.DEFAULT
    # Capabilities the engine reads (never the type's key):
    # - `pure`: no I/O, no side effect, microseconds of work, the same output for the same body.
    #   The engine runs such a task where it becomes ready, fused into the step that made it
    #   ready (or into the call, for a session that needs no worker), never through the broker.
    pure: ClassVar[bool] = False
    # - `timer`: the task only waits. Its step holds no worker while it waits: the claim is kept
    #   and the message is delivered again when `wait_seconds(body)` have passed.
    timer: ClassVar[bool] = False
    # - `slow`: the task holds a worker process for up to its timeout doing I/O (a network call, a
    #   sandbox). One user runs at most JUNCTION_MAX_SLOW_TASKS_PER_USER of them at once
    #   (interactions/slots.py); the others wait for a slot without being claimed.
    slow: ClassVar[bool] = False
    # - `replies`: a completed task of this type is the HTTP answer of a waited run and the
    #   session's result (`response`).
    replies: ClassVar[bool] = False

    def wait_seconds(self, body: dict[str, Any]) -> float:
        """For a `timer` type: how long the task waits, from the moment it is claimed."""
        raise NotImplementedError

    def field(self, name: str) -> FieldSpec | None:
        return next((spec for spec in self.fields if spec.name == name), None)

    def check_body(self, body: dict[str, Any], *, prefix: str = "") -> dict[str, list[str]]:
        """Return the problems of a concrete body per `<prefix><field>` (empty when it can run)."""
        return validate(self.fields, body, prefix=prefix, unknown=f"Unknown field for task type {self.key!r}.")

    def describe(self) -> dict[str, Any]:
        """Return the public description of the type (the catalog API's item)."""
        return {
            "type": self.key,
            "name": self.name,
            "description": self.description,
            "provider": self.provider,
            "fields": [spec.describe() for spec in self.fields],
            "output": {"description": self.output_description, "schema": self.output_schema},
        }

    def run(self, body: dict[str, Any], context: TaskContext) -> Any:
        """Do the task's work with a fully resolved `body`; return its JSON-serialisable output.

        Raise TaskFailed for a failure the user should see as the task's error.
        """
        raise TaskFailed(f"task type {self.key!r} cannot run yet on this server")
