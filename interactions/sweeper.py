"""The sweeper: no session stays `queued` or `running` forever (SPEC §3 "Durability").

Run periodically (`junction.sweep`, every JUNCTION_SWEEP_INTERVAL seconds by Celery beat, or
by the embedded worker), it
- ends sessions past their deadline as `timed_out` (their unfinished tasks `cancelled`);
- finds sessions that made no progress for JUNCTION_STALL_SECONDS (no task recorded, no live
  claim) — their messages were lost with a broker restart, or a worker dropped them — and
  resumes them from PostgreSQL: only the unfinished part of the DAG is compiled and sent
  again, recorded outputs are reused;
- fails a session with a clear reason once it has been resumed JUNCTION_MAX_RESUMES times
  without finishing, but only while the queues are empty: a session behind a backlog may
  just be waiting its turn (its deadline still bounds it), and while the broker is down
  nothing can be judged or sent.
Sessions are locked with SKIP LOCKED, so several sweepers may run at once.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from config import metrics, oplog
from config.celery import queue_depths
from interactions.compiled import compiled_version
from interactions.models import Session, TaskRun
from interactions import executor
from interactions.dispatch import dispatch_plan, worker_plan
from interactions.sessions import session_end
from interactions.statuses import SESSION_ACTIVE as ACTIVE
from interactions.statuses import TASK_UNFINISHED

logger = logging.getLogger(__name__)
BATCH = 200


@dataclass
class SweepReport:
    timed_out: int = 0
    resumed: int = 0
    abandoned: int = 0
    waiting: int = 0  # stalled, but the broker is down or has a backlog

    @property
    def total(self) -> int:
        return self.timed_out + self.resumed + self.abandoned + self.waiting


def session_resume(*, session: Session, now: datetime, worker: str | None = None) -> None:
    """Resume a stalled session: run its ready fused tasks (recorded as run by `worker`), send
    its unfinished steps again.

    With nothing left to send, the finishing task ends the session from its records.
    """
    compiled = compiled_version(session.version.id, session.version.tasks)
    Session.objects.filter(pk=session.pk).update(resumes=session.resumes + 1, updated_at=now)
    executor.fused_resume(session_id=session.pk, compiled=compiled, caller_input=session.input,
                          user_id=session.user_id, now=now, worker=worker)
    unfinished = set(session.task_runs.filter(status__in=TASK_UNFINISHED).values_list("name", flat=True))
    if not unfinished:
        return  # the fused tasks ended it
    plan = worker_plan(compiled=compiled, unfinished=unfinished)
    transaction.on_commit(lambda: dispatch_plan(
        session_id=str(session.pk), version_id=str(session.version_id), compiled=compiled, plan=plan,
        user_id=str(session.user_id)))


def sessions_sweep(*, now: datetime | None = None, worker: str | None = None) -> SweepReport:
    """Time out, resume or abandon the sessions that need it; return what was done.

    `worker` names where the fused tasks a resume runs ran (default: `executor.call_worker()`).
    """
    now = now or timezone.now()
    report = SweepReport()
    with transaction.atomic():
        overdue = (
            Session.objects.select_for_update(skip_locked=True)
            .filter(status__in=ACTIVE, deadline_at__lt=now)[:BATCH]
        )
        for session in overdue:
            oplog.session_timed_out(session.pk, interaction_id=session.interaction_id)
            deadline = session.deadline_at.isoformat() if session.deadline_at else "unknown"
            session_end(session=session, status=Session.Status.TIMED_OUT,
                        error=f"timed out: the session's deadline ({deadline}) passed",
                        now=now)
            report.timed_out += 1

    stalled_before = now - timedelta(seconds=settings.JUNCTION_STALL_SECONDS)
    live_claims = TaskRun.objects.filter(status=TaskRun.Status.RUNNING, lease_expires_at__gt=now)
    with transaction.atomic():
        stalled = list(
            Session.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("version")
            .filter(status__in=ACTIVE, updated_at__lt=stalled_before)
            .exclude(Q(id__in=live_claims.values("session_id")))[:BATCH]
        )
        depths = queue_depths() if stalled else {}
        backlog = None if depths is None else sum(depths.values())
        for session in stalled:
            if backlog is None:
                report.waiting += 1  # the broker is down: nothing can be sent or judged now
            elif session.resumes >= settings.JUNCTION_MAX_RESUMES and backlog:
                report.waiting += 1  # it may only be waiting behind the backlog: don't fail it
            elif session.resumes >= settings.JUNCTION_MAX_RESUMES:
                oplog.session_abandoned(session.pk, session.resumes, interaction_id=session.interaction_id)
                session_end(session=session, status=Session.Status.FAILED, now=now, error=(
                    f"stalled: no progress after {session.resumes} resumes "
                    f"(workers or broker unavailable?)"
                ))
                report.abandoned += 1
            else:
                oplog.session_resumed(session.pk, session.resumes + 1, interaction_id=session.interaction_id)
                session_resume(session=session, now=now, worker=worker)
                report.resumed += 1
    metrics.sweeper_acted(timed_out=report.timed_out, resumed=report.resumed, abandoned=report.abandoned,
                          waiting=report.waiting)
    return report
