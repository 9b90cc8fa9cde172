"""Put the request, user, interaction, session and task on every log line that has them.

The context lives in `contextvars`, set at the two doors work comes in by:
- `RequestContextMiddleware` for an HTTP request: a request id (the caller's `X-Request-ID`
  when it is sane, else a new one, echoed in the response), the user once DRF has
  authenticated them, and the interaction or session the URL names;
- Celery's `task_prerun`/`task_postrun` signals for a task on a worker: `junction.run_task`'s
  arguments give the session and the task, `junction.finish_session`'s the session.

Under ASGI (config/asgi.py) the synchronous middleware chain runs on a lane thread through
`sync_to_async`, which runs it in a copy of the request's own context: one request's values
never show on another's lines, and the middleware resets them when its request ends anyway
(a WSGI thread serves many requests).

`ContextFilter` copies the values onto each record (only those that are set); the JSON
formatter (python-json-logger) writes them as fields, `TextFormatter` appends them as
`key=value` for the embedded mode. Services add their own facts with `extra=` (config/oplog.py).
"""
from __future__ import annotations

import logging
import re
import uuid
from contextvars import ContextVar
from typing import Any

from django.utils.functional import SimpleLazyObject, empty

FIELDS = ("request_id", "user_id", "end_user_id", "interaction_id", "session_id", "task", "celery_task_id")

request_id: ContextVar[str | None] = ContextVar("junction_request_id", default=None)
_request: ContextVar[Any] = ContextVar("junction_request", default=None)
interaction_id: ContextVar[str | None] = ContextVar("junction_interaction_id", default=None)
session_id: ContextVar[str | None] = ContextVar("junction_session_id", default=None)
task: ContextVar[str | None] = ContextVar("junction_task", default=None)
celery_task_id: ContextVar[str | None] = ContextVar("junction_celery_task_id", default=None)

_VARS = {"request_id": request_id, "interaction_id": interaction_id, "session_id": session_id,
         "task": task, "celery_task_id": celery_task_id}
# A caller's request id is echoed into our logs: only short, plain ones.
_SANE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def _caller(request: Any) -> tuple[str | None, str | None]:
    """The authenticated user's id and, for an app's end user, theirs, without ever making the
    log call query the database.

    DRF puts the user it authenticated on the Django request; until then it is Django's lazy
    session user, which is read only if something already evaluated it. An end user's
    `user_id` is the builder who owns their app (whose data the request touches).
    """
    user = request.__dict__.get("user") if request is not None else None
    if user is None or (isinstance(user, SimpleLazyObject) and user._wrapped is empty):
        return None, None
    if not getattr(user, "is_authenticated", False):
        return None, None
    pk = getattr(user, "pk", None)
    if getattr(user, "is_end_user", False):
        return str(user.app.owner_id), str(pk)
    return (None if pk is None else str(pk)), None


def current() -> dict[str, str]:
    """The context of this thread or task, as the fields a log line carries."""
    values = {name: var.get() for name, var in _VARS.items()}
    values["user_id"], values["end_user_id"] = _caller(_request.get())
    return {name: str(values[name]) for name in FIELDS if values.get(name) is not None}


class ContextFilter(logging.Filter):
    """Copy the current context onto a record (a field passed with `extra=` wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in current().items():
            if not hasattr(record, name):
                setattr(record, name, value)
        return True


class TextFormatter(logging.Formatter):
    """The plain-text line, with the context appended as `key=value` (LOG_FORMAT=text)."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        pairs = " ".join(f"{name}={getattr(record, name)}" for name in FIELDS if getattr(record, name, None))
        if not pairs:
            return line
        first, newline, rest = line.partition("\n")  # keep a traceback below the line
        return f"{first} [{pairs}]{newline}{rest}"


class RequestContextMiddleware:
    """Set the log context of one HTTP request; echo its id in `X-Request-ID`."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        incoming = request.headers.get("X-Request-ID", "")
        rid = incoming if _SANE_ID.match(incoming) else uuid.uuid4().hex
        request.request_id = rid
        tokens = [(request_id, request_id.set(rid)), (_request, _request.set(request)),
                  (interaction_id, interaction_id.set(None)), (session_id, session_id.set(None))]
        try:
            response = self.get_response(request)
        finally:
            for var, token in reversed(tokens):
                var.reset(token)
        response["X-Request-ID"] = rid
        return response

    def process_view(self, request, view_func, view_args, view_kwargs):
        """Name the interaction or session the URL is about (`/api/interactions/<pk>/…`)."""
        match = request.resolver_match
        pk = view_kwargs.get("pk")
        if match is None or pk is None:
            return None
        if (match.url_name or "").startswith("interaction-"):
            interaction_id.set(str(pk))
        elif (match.url_name or "").startswith("session-"):
            session_id.set(str(pk))
        return None


# --- Celery ----------------------------------------------------------------------------------

def task_started(*, task_name: str, task_id: str | None, args: Any, kwargs: Any) -> None:
    """Set the context of a Celery task from its arguments (the `task_prerun` signal)."""
    args, kwargs = list(args or ()), dict(kwargs or {})
    celery_task_id.set(task_id)
    if task_name == "junction.run_task":
        session_id.set(str(kwargs.get("session_id", args[0] if args else "")) or None)
        task.set(kwargs.get("name", args[1] if len(args) > 1 else None))
    elif task_name == "junction.finish_session":
        session_id.set(str(kwargs.get("session_id", args[0] if args else "")) or None)


def task_ended() -> None:
    """Clear the context of a Celery task (the `task_postrun` signal): a pool reuses its threads."""
    for var in (celery_task_id, session_id, task, interaction_id):
        var.set(None)
