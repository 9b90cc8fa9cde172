"""Celery tasks of the catalog: a trial of a task type on the queue where the type runs.

Discovered by `app.autodiscover_tasks()`. The worker side also says once, at start-up, how the
code sandbox limits a task (per task with cgroup v2, or per process only).
"""
from __future__ import annotations

from typing import Any

from celery import shared_task
from celery.signals import worker_init

from tasks_catalog.trial import trial_run


# Not acked late, unlike a session's steps: a trial is answered once or not at all; a trial
# that killed its worker must not run again on the next one.
@shared_task(name="junction.try_task", acks_late=False, reject_on_worker_lost=False)
def try_task(*, type_key: str, body: dict[str, Any], integration_id: str | None, user_id: str,
             timeout: float) -> dict[str, Any]:
    """Run one trial (`POST /api/task-types/{type}/test/`) and return its result."""
    return trial_run(type_key=type_key, body=body, integration_id=integration_id, user_id=user_id, timeout=timeout)


@worker_init.connect
def _say_how_code_is_limited(**kwargs: Any) -> None:
    from django.conf import settings

    from tasks_catalog.sandbox_cgroup import cgroup_parent

    # Before the pool forks: its processes inherit the answer instead of each logging it again.
    if settings.JUNCTION_CODE_SANDBOX == "bwrap":
        cgroup_parent()  # logs, once, whether code tasks get a cgroup of their own
