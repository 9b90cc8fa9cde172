"""Celery tasks: thin wrappers that call the executor services with ids.

None of them ever raises into a canvas: a chord whose header raises never runs its body.
"""
from __future__ import annotations

import logging
import time
from typing import Any

from celery import shared_task, signature
from celery.exceptions import Ignore
from django.conf import settings
from django.db import DatabaseError, InterfaceError, close_old_connections

from interactions import executor, retention, sweeper

logger = logging.getLogger(__name__)

# Database outages are retried this many times (backoff up to 60 s each) before the message
# is dropped; the sweeper then resumes the session from what PostgreSQL recorded.
INFRA_RETRIES = 8


class ChainRest:
    """The messages a step's Celery chain sends after it (`request.chain`, the next one last),
    as the executor sees them (executor.ChainRest): a link this step runs itself is taken out,
    so that Celery sends the one after it when the step returns.

    The step's time is its message's soft time limit, counted from when the step started.
    """

    def __init__(self, request, session_id: str):
        self.request = request
        self.session_id = session_id
        soft = (request.timelimit or (None, None))[1]
        self.deadline = time.monotonic() + soft if soft else None
        self.current: dict[str, Any] | None = None  # the link taken last, until it is recorded
        self.taken = 0

    def remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic()) if self.deadline is not None else 0.0

    def peek(self) -> str | None:
        chain = self.request.chain
        if not chain:
            return None
        link = chain[-1]
        options, kwargs, args = link.get("options") or {}, link.get("kwargs") or {}, list(link.get("args") or [])
        if (link.get("task") != run_task.name or link.get("subtask_type") or len(args) < 2
                or args[0] != self.session_id or kwargs.get("due") is not None
                or any(options.get(key) for key in ("chord", "link", "link_error"))):
            return None
        return args[1]

    def take(self) -> None:
        self.current = self.request.chain.pop()
        self.taken += 1

    def stored(self) -> None:
        self.current = None

    def hand_over(self, countdown: float, *, outage: bool = False) -> bool:
        """Send the link taken last after `countdown` s, with the rest of the chain (nothing is
        sent when the step returns). False, sending nothing, past the outage retries' cap."""
        link, self.current = self.current or {}, None
        rest, self.request.chain = list(self.request.chain or ()), []
        message = signature(dict(link), app=run_task.app)
        if outage:
            outages = message.kwargs.get("outages", 0) + 1
            if outages > INFRA_RETRIES:
                return False
            message.kwargs["outages"] = outages
        message.apply_async(countdown=countdown, chain=rest)
        return True


@shared_task(name="junction.run_task", bind=True, max_retries=None)
def run_task(self, session_id: str, name: str, version_id: str | None = None, outages: int = 0,
             user_id: str | None = None, due: float | None = None, timer_error: str | None = None) -> None:
    """Run one step of a session. `outages` counts this message's database-outage retries only:
    waits for predecessors, leases, timers and slow-task slots are not outages and have no cap
    here. `user_id` is the session's owner (for the slow-task slots); `due` and `timer_error`
    come with a timer the call claimed (executor.task_execute).

    The step may run the next links of its chain itself (`ChainRest`); what goes wrong in such a
    link is that link's: its own message is sent to retry it, and this one ends normally.
    """
    chain = ChainRest(self.request, session_id) if settings.JUNCTION_CHAIN_STEP_SECONDS and self.request.chain \
        else None
    try:
        executor.task_execute(session_id=session_id, name=name, version_id=version_id, user_id=user_id,
                              worker=self.request.hostname, due=due, timer_error=timer_error, chain=chain)
    except executor.Duplicate:
        raise Ignore() from None
    except executor.RetryLater as later:
        if chain is not None and chain.current is not None:
            chain.hand_over(later.countdown)
            return
        raise self.retry(countdown=later.countdown) from None
    except (DatabaseError, InterfaceError) as exc:
        close_old_connections()  # a broken connection is replaced before the next try
        if chain is not None and chain.taken:
            # This step's own task is recorded. A link it ran and did not record: that link's own
            # message retries it (past the cap, the sweeper does); the rest of the chain goes on.
            if chain.current is not None and not chain.hand_over(executor.backoff(1), outage=True):
                logger.error("giving up on %s/%s after database errors: %s", session_id, name, exc)
            return
        if outages >= INFRA_RETRIES:
            # Past the cap the sweeper takes over from what PostgreSQL recorded.
            logger.error("giving up on %s/%s after %d database errors: %s", session_id, name, outages, exc)
            raise Ignore() from None
        raise self.retry(
            args=(session_id, name, version_id),
            kwargs={"outages": outages + 1, "user_id": user_id, "due": due, "timer_error": timer_error},
            countdown=executor.backoff(outages + 1),
        ) from None


@shared_task(name="junction.finish_session", bind=True, max_retries=INFRA_RETRIES)
def finish_session(self, session_id: str) -> str:
    try:
        return executor.session_finish(session_id=session_id)
    except executor.RetryLater as later:
        # Back off up to 30 s between looks; the session's deadline ends the wait at the latest.
        countdown = min(30.0, later.countdown * 2 ** min(self.request.retries, 6))
        raise self.retry(countdown=countdown, max_retries=None) from None
    except (DatabaseError, InterfaceError):
        if self.request.retries >= INFRA_RETRIES:
            raise Ignore() from None
        raise self.retry(countdown=executor.backoff(self.request.retries + 1)) from None


@shared_task(name="junction.sweep", bind=True, ignore_result=True)
def sweep(self) -> None:
    report = sweeper.sessions_sweep(worker=self.request.hostname)
    if report.total:
        logger.info("sweeper: %s", report)


# One round deletes at most this many sessions; the next round (an hour later) goes on.
PURGE_ROUND = 100_000


@shared_task(name="junction.purge_sessions", ignore_result=True)
def purge_sessions() -> None:
    """Delete finished sessions past JUNCTION_SESSION_RETENTION_DAYS (interactions/retention.py)."""
    before = retention.retention_cutoff()
    if before is not None:
        retention.sessions_purge(before=before, limit=PURGE_ROUND)
