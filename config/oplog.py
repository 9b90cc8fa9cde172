"""The log lines an operator reads: a session started or finished, a task failed, retried or
was taken over, the sweeper resumed, timed out or gave up on a session.

Each function logs one line on the `junction.ops` logger with an `event` field and the facts
as fields (JSON, LOG_FORMAT=json) or in the message (text). They never raise and never
touch the network: call them where the thing happens. Error texts are cut to ERROR_CHARS;
they are the task's recorded error, from which the executor has already removed secrets.
"""
from __future__ import annotations

import logging
from typing import Any

from interactions.statuses import SessionStatus

logger = logging.getLogger("junction.ops")
ERROR_CHARS = 500


def _log(level: int, event: str, message: str, *args: Any, **fields: Any) -> None:
    try:
        extra = {"event": event, **{k: (str(v) if k.endswith("_id") and v is not None else v)
                                    for k, v in fields.items() if v is not None}}
        logger.log(level, message, *args, extra=extra)
    except Exception:  # an operator's line must never break the work it reports
        logging.getLogger(__name__).debug("could not log %s", event, exc_info=True)


def _cut(error: Any) -> str | None:
    if error is None:
        return None
    text = str(error)
    return text if len(text) <= ERROR_CHARS else text[:ERROR_CHARS] + "…"


def session_started(session_id: Any, interaction_id: Any, user_id: Any, *, version: int | None = None) -> None:
    _log(logging.INFO, "session_started", "session %s of interaction %s started",
         session_id, interaction_id, session_id=session_id, interaction_id=interaction_id, user_id=user_id,
         version=version)


def session_finished(session_id: Any, status: str, duration_ms: int | float | None, *,
                     interaction_id: Any = None, error: Any = None) -> None:
    """INFO when it completed or was cancelled, WARNING when it failed or timed out."""
    level = logging.INFO if status in (SessionStatus.COMPLETED, SessionStatus.CANCELLED) else logging.WARNING
    duration = None if duration_ms is None else int(duration_ms)
    _log(level, "session_finished", "session %s finished: %s in %s ms", session_id, status, duration,
         session_id=session_id, interaction_id=interaction_id, status=status, duration_ms=duration,
         error=_cut(error))


def task_failed(session_id: Any, task: str, type: str, error: Any, attempt: int) -> None:
    _log(logging.WARNING, "task_failed", "task %s (%s) of session %s failed on attempt %s: %s",
         task, type, session_id, attempt, _cut(error),
         session_id=session_id, task=task, task_type=type, error=_cut(error), attempt=attempt)


def task_retry(session_id: Any, task: str, type: str, error: Any, attempt: int, countdown: float) -> None:
    """A transient failure with retries left: the task runs again in `countdown` seconds."""
    _log(logging.INFO, "task_retry", "task %s (%s) of session %s failed on attempt %s, retrying in %.1f s: %s",
         task, type, session_id, attempt, countdown, _cut(error),
         session_id=session_id, task=task, task_type=type, error=_cut(error), attempt=attempt,
         countdown_s=round(countdown, 3))


def task_taken_over(session_id: Any, task: str, attempt: int, *, type: str | None = None) -> None:
    """A delivery claimed a task whose previous claim's lease ran out (its worker was lost)."""
    _log(logging.WARNING, "task_taken_over", "task %s of session %s taken over (attempt %s): its worker was lost",
         task, session_id, attempt, session_id=session_id, task=task, task_type=type, attempt=attempt)


def task_poisoned(session_id: Any, task: str, attempt: int, *, type: str | None = None) -> None:
    """A task whose worker was lost JUNCTION_MAX_WORKER_LOSSES times is failed."""
    _log(logging.ERROR, "task_poisoned", "task %s of session %s failed: its worker was lost %s times",
         task, session_id, attempt, session_id=session_id, task=task, task_type=type, attempt=attempt)


def worker_restarted_for_hard_limit(*, task_id: Any, task_name: str, seconds_past: float) -> None:
    """A worker whose pool cannot kill a task (threads) restarts itself: the task outlived its
    hard time limit (config/hardlimits.py)."""
    _log(logging.ERROR, "worker_restarted", "task %s (%s) is %.1f s past its hard time limit: restarting this worker",
         task_id, task_name, seconds_past, task_id=task_id, task_name=task_name, seconds_past=round(seconds_past, 1))


def session_resumed(session_id: Any, resume: int, *, interaction_id: Any = None) -> None:
    _log(logging.WARNING, "session_resumed", "sweeper: resuming stalled session %s (resume %s)",
         session_id, resume, session_id=session_id, interaction_id=interaction_id, resume=resume)


def session_timed_out(session_id: Any, *, interaction_id: Any = None) -> None:
    _log(logging.WARNING, "session_timed_out", "sweeper: session %s passed its deadline: timed out",
         session_id, session_id=session_id, interaction_id=interaction_id)


def session_abandoned(session_id: Any, resumes: int, *, interaction_id: Any = None) -> None:
    _log(logging.ERROR, "session_abandoned", "sweeper: session %s failed: no progress after %s resumes",
         session_id, resumes, session_id=session_id, interaction_id=interaction_id, resumes=resumes)


def sessions_purged(count: int, *, older_than: str) -> None:
    _log(logging.INFO, "sessions_purged", "retention: deleted %s sessions finished before %s",
         count, older_than, count=count, older_than=older_than)
