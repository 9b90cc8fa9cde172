"""Celery tasks: thin wrappers that call the executor services with ids.

None of them ever raises into a canvas: a chord whose header raises never runs its body.
"""
from __future__ import annotations

import logging

from celery import shared_task
from celery.exceptions import Ignore
from django.db import DatabaseError, InterfaceError

from interactions import executor, sweeper

logger = logging.getLogger(__name__)

# Database outages are retried this many times (backoff up to 60 s each) before the message
# is dropped; the sweeper then resumes the session from what PostgreSQL recorded.
INFRA_RETRIES = 8


@shared_task(name="junction.run_task", bind=True, max_retries=None)
def run_task(self, session_id: str, name: str) -> None:
    try:
        executor.task_execute(session_id=session_id, name=name)
    except executor.Duplicate:
        raise Ignore() from None
    except executor.RetryLater as later:
        raise self.retry(countdown=later.countdown) from None
    except (DatabaseError, InterfaceError) as exc:
        # `retries` counts every redelivery of this message; past the cap the sweeper takes over.
        if self.request.retries >= INFRA_RETRIES:
            logger.error("giving up on %s/%s after database errors: %s", session_id, name, exc)
            raise Ignore() from None
        raise self.retry(countdown=executor.backoff(self.request.retries + 1)) from None


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


@shared_task(name="junction.sweep", ignore_result=True)
def sweep() -> None:
    report = sweeper.sessions_sweep()
    if report.total:
        logger.info("sweeper: %s", report)
