"""Celery tasks: thin wrappers that call the executor services with ids."""
from __future__ import annotations

from celery import shared_task

from interactions import executor


@shared_task(name="junction.run_task", bind=True, acks_late=True, max_retries=None)
def run_task(self, session_id: str, name: str) -> None:
    try:
        executor.task_execute(session_id=session_id, name=name)
    except executor.RetryLater as later:
        raise self.retry(countdown=later.countdown)


@shared_task(name="junction.finish_session", acks_late=True)
def finish_session(session_id: str) -> str:
    return executor.session_finish(session_id=session_id)
