"""Celery tasks: thin wrappers that call the executor services with ids.

None of them ever raises into a canvas: a chord whose header raises never runs its body.
"""
from __future__ import annotations

import logging

from celery import shared_task
from celery.exceptions import Ignore
from django.db import DatabaseError, InterfaceError, close_old_connections

from interactions import executor, retention, sweeper

logger = logging.getLogger(__name__)

# Database outages are retried this many times (backoff up to 60 s each) before the message
# is dropped; the sweeper then resumes the session from what PostgreSQL recorded.
INFRA_RETRIES = 8


@shared_task(name="junction.run_task", bind=True, max_retries=None)
def run_task(self, session_id: str, name: str, version_id: str | None = None, outages: int = 0,
             user_id: str | None = None, due: float | None = None, timer_error: str | None = None) -> None:
    """Run one step of a session. `outages` counts this message's database-outage retries only:
    waits for predecessors, leases, timers and slow-task slots are not outages and have no cap
    here. `user_id` is the session's owner (for the slow-task slots); `due` and `timer_error`
    come with a timer the call claimed (executor.task_execute)."""
    try:
        executor.task_execute(session_id=session_id, name=name, version_id=version_id, user_id=user_id,
                              worker=self.request.hostname, due=due, timer_error=timer_error)
    except executor.Duplicate:
        raise Ignore() from None
    except executor.RetryLater as later:
        raise self.retry(countdown=later.countdown) from None
    except (DatabaseError, InterfaceError) as exc:
        close_old_connections()  # a broken connection is replaced before the next try
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
