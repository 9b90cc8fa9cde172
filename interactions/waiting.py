"""`Prefer: wait=N` (RFC 7240) for the run endpoint: block until the session ends, or N s."""
from __future__ import annotations

import logging
import re

from celery.exceptions import TimeoutError as CeleryTimeout
from celery.result import AsyncResult
from django.conf import settings

from config.celery import app

logger = logging.getLogger(__name__)
_WAIT = re.compile(r"(?:^|[,;\s])wait\s*=\s*\"?(\d+(?:\.\d+)?)\"?", re.IGNORECASE)


def requested_wait(prefer_header: str | None, query_value: str | None) -> float | None:
    """Return the seconds to wait (capped by JUNCTION_MAX_WAIT), or None for no waiting."""
    raw = None
    if prefer_header:
        match = _WAIT.search(prefer_header)
        raw = match.group(1) if match else None
    if raw is None and query_value not in (None, ""):
        raw = query_value
    if raw is None:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        return None
    return max(0.0, min(seconds, settings.JUNCTION_MAX_WAIT))


def wait_for_session(session_id: str, seconds: float) -> bool:
    """Block until the session ends or `seconds` pass; True if it ended.

    The end is announced as the Celery result whose id is the session's id
    (`sessions.announce_end`), so this waits on one result: with Redis, a pub/sub
    notification, not a polling loop (other backends are polled every 20 ms).
    """
    if seconds <= 0:
        return False
    try:
        AsyncResult(session_id, app=app).get(
            timeout=seconds, interval=0.02, propagate=False, disable_sync_subtasks=False
        )
    except CeleryTimeout:
        return False
    except Exception:  # the result backend is unreachable: answer 202, the session goes on
        logger.warning("could not wait for session %s", session_id, exc_info=True)
        return False
    return True
