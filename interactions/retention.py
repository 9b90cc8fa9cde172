"""Session retention: delete finished sessions older than JUNCTION_SESSION_RETENTION_DAYS.

Only sessions in a terminal status (completed, failed, cancelled, timed_out) whose end is
older than the cut-off are deleted, with their task records, in batches of
JUNCTION_PURGE_BATCH, each in its own short transaction: a queued or running session is
never touched, and no lock is held for long. Run hourly by beat (`junction.purge_sessions`)
and on demand by `manage.py purge_sessions`.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from config import metrics, oplog
from interactions.models import Session, TaskRun


def retention_cutoff(*, now: datetime | None = None, days: int | None = None) -> datetime | None:
    """The end time before which finished sessions go; None when retention is off (0 days)."""
    days = settings.JUNCTION_SESSION_RETENTION_DAYS if days is None else days
    if not days:
        return None
    return (now or timezone.now()) - timedelta(days=days)


def sessions_purge(*, before: datetime, batch: int | None = None, limit: int | None = None) -> int:
    """Delete finished sessions that ended before `before`, batch by batch; return how many.

    `limit` bounds one call (the beat job's round); None deletes all that qualify.
    """
    batch = batch or settings.JUNCTION_PURGE_BATCH
    deleted = 0
    while limit is None or deleted < limit:
        size = batch if limit is None else min(batch, limit - deleted)
        with transaction.atomic():
            ids = list(
                Session.objects.select_for_update(skip_locked=True)
                .filter(status__in=Session.TERMINAL, finished_at__lt=before)
                .order_by("finished_at").values_list("id", flat=True)[:size]
            )
            if not ids:
                break
            # A retry points at the session it retried: keep the retry, forget the link.
            Session.objects.filter(retry_of_id__in=ids).update(retry_of=None)
            TaskRun.objects.filter(session_id__in=ids).delete()
            Session.objects.filter(id__in=ids, status__in=Session.TERMINAL).delete()
        deleted += len(ids)
        if len(ids) < size:
            break
    if deleted:
        metrics.sessions_purged(deleted)
        oplog.sessions_purged(deleted, older_than=before.isoformat())
    return deleted
