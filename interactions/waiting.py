"""`Prefer: wait=N` (RFC 7240) for the run endpoint: answer when the session ends, or after N s.

The run view stays a synchronous DRF action (authentication, throttling, validation,
`session_start`, the error shape): it answers at once unless the caller waits for a session
that has not ended; then it returns a 202 that carries a `PendingWait`. The ASGI server
(config/asgi.py) completes it on the event loop, holding no thread: it awaits the session's end
published by whoever ended it (`interactions.events`) and answers from that payload without
reading the session again (`waiting_view` makes other servers' threads wait instead). Only when nothing arrives in time (or the event
bus is down) is the session read from the database: 202 as it is then, or — a lost message —
the finished answer.
"""
from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from typing import Any, Callable

from asgiref.sync import async_to_sync, sync_to_async
from django.conf import settings
from rest_framework import status
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from interactions import events, holding, selectors
from interactions.models import Session
from interactions.statuses import SESSION_TERMINAL

_WAIT = re.compile(r"(?:^|[,;\s])wait\s*=\s*\"?(\d+(?:\.\d+)?)\"?", re.IGNORECASE)
_NUMBER = re.compile(r"^-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?$")
_TERMINAL = SESSION_TERMINAL


def requested_wait(prefer_header: str | None, query_value: str | None) -> float | None:
    """Return the seconds to wait (capped by JUNCTION_MAX_WAIT), or None for no waiting.

    A `Prefer` header without `wait=` is ignored (RFC 7240: preferences are optional); a `?wait=`
    that is not a number of seconds is a 400 naming it.
    """
    raw = None
    if prefer_header:
        match = _WAIT.search(prefer_header)
        raw = match.group(1) if match else None
    if raw is None and query_value is not None:
        # A JSON number, as documented (Python's float() also reads " 1", "1_0", "inf", "١").
        if not _NUMBER.fullmatch(query_value) or not math.isfinite(float(query_value)):
            raise ValidationError({"wait": ["Must be a number of seconds."]})
        raw = float(query_value)
    if raw is None:
        return None
    return max(0.0, min(float(raw), settings.JUNCTION_MAX_WAIT))


def answer(data: dict[str, Any], *, waited: bool, reply_names: list[str]) -> tuple[Any, int, dict[str, str]]:
    """Return the body, status and extra headers that answer a run, from the session's data.

    Not ended: 202 with the session. Ended and waited for: the first completed `response`
    task's reply if there is one, else 200 with the session. Ended, not waited for: 202.
    """
    if data["status"] not in _TERMINAL:
        return data, status.HTTP_202_ACCEPTED, {}
    if not waited:
        return data, status.HTTP_202_ACCEPTED, {}
    reply = selectors.reply_from_data(data, reply_names)
    if reply is not None:
        return reply["body"], reply["status_code"], dict(reply["headers"] or {})
    return data, status.HTTP_200_OK, {}


def session_response(
    session: Session, wait: float | None, *, sessions_path: str | None = "/api/sessions/", replayed: bool = False,
    held: holding.Held | None = None,
) -> Response:
    """Answer a run: 202 with the session, 200 / the reply if it ended, or a `PendingWait`.

    `Location` is the session under `sessions_path` (an end user's: their app's sessions;
    None for an anonymous caller, who can read no session). `replayed`: an earlier call with the
    same Idempotency-Key made the session; the answer says so (`Idempotent-Replayed: true`,
    docs/api.md). `held`: the session's timers, which the call holds (interactions/holding.py):
    the wait starts them.
    """
    headers = {"Location": f"{sessions_path}{session.id}/"} if sessions_path else {}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    waited = wait is not None
    if waited:
        headers["Preference-Applied"] = f"wait={wait:g}"
    reply_names = selectors.reply_tasks(version_id=session.version_id) if waited else []
    if wait is not None and wait > 0 and not session.is_finished:
        response = Response(None, status=status.HTTP_202_ACCEPTED, headers=headers)
        pending = PendingWait(session_id=str(session.id), seconds=wait, reply_names=reply_names, held=held)
        response.pending_wait = pending  # type: ignore[attr-defined]  # read by waiting_view and config.asgi
        return response
    if not session.is_finished:
        session = selectors.session_by_id(session_id=session.pk)
    # else: a session finished by the call itself (only pure tasks) needs no second look
    data = selectors.session_data(session)
    body, code, extra = answer(data, waited=waited, reply_names=reply_names)
    return Response(body, status=code, headers={**headers, **extra})


@dataclass(frozen=True)
class PendingWait:
    """A run's answer still to come: wait for the session's end, at most `seconds`."""

    session_id: str
    seconds: float
    reply_names: list[str]
    held: holding.Held | None = None  # timers this call holds: started with the wait

    async def complete(self, response: Response) -> Response:
        """Wait for the end, then make `response` the answer (rendering it again if it was)."""
        if self.held is not None:
            holding.start(self.held)
        data = await events.wait_for_end(self.session_id, self.seconds)
        if data is None:  # not in time, or no event bus: the session as it is now
            data = await sync_to_async(_session_data)(self.session_id)
        body, code, extra = answer(data, waited=True, reply_names=self.reply_names)
        response.data = body
        response.status_code = code
        for name, value in extra.items():
            response[name] = value
        if response.is_rendered:  # the middleware has seen it already: only the body changes
            response.content = response.rendered_content
            response["Content-Length"] = str(len(response.content))
        return response


def _session_data(session_id: str) -> dict[str, Any]:
    return selectors.session_data(selectors.session_by_id(session_id=session_id))


def waits_on_event_loop(request) -> None:
    """Mark a request whose server completes a `PendingWait` on its event loop (config/asgi.py)."""
    request.waits_on_event_loop = True


def waiting_view(view: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a DRF view whose response may carry a `PendingWait`, so that somebody completes it.

    Under config/asgi.py the server completes it on the event loop once the middleware has run,
    holding no thread; anywhere else (a WSGI server, the test client) this thread waits. The
    wrapper keeps the view's attributes (`cls`, `actions`, `csrf_exempt`), so routing and the
    OpenAPI schema see the same DRF view.
    """

    def wrapper(request, *args, **kwargs):
        response = view(request, *args, **kwargs)
        pending = getattr(response, "pending_wait", None)
        if pending is None or getattr(request, "waits_on_event_loop", False):
            return response
        del response.pending_wait
        return async_to_sync(pending.complete)(response)

    return functools.wraps(view)(wrapper)
