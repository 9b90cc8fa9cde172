"""The task-run state machine: what a delivery of a task should do, given what its claim saw.

Delivery is at least once (late acks, requeue on worker loss, the sweeper's resumes), so every
delivery first tries to claim its task (`runstore.claim`) and then reads the verdict here:

    pending ──claim──▶ running ──record──▶ completed | failed
       │                  │  ╲──retry (transient, retries left)──▶ pending (claim given back)
       │                  ╰──lease ran out──▶ taken over by the next delivery (attempts + 1),
       │                                      or failed as a poison task past JUNCTION_MAX_WORKER_LOSSES
       ╰──predecessors ended, an edge not satisfied──▶ skipped
    any unfinished task of an ended session ──▶ cancelled

- a delivery that finds its task ended is a duplicate: it fires nothing;
- while another delivery's lease holds, this one comes back when the lease ends;
- a `timer` task (delay) keeps its claim while it waits; any delivery ends it once due.

Pure functions of a `runstore.Snapshot`: tested deterministically, with no worker and frozen time.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta

from interactions.runstore import Snapshot
from interactions.statuses import PENDING, RUNNING
from interactions.statuses import SESSION_ACTIVE as ACTIVE
from interactions.statuses import TASK_TERMINAL as TERMINAL

# A delivery that lost a race looks again this soon (seconds).
RACE_RETRY = 0.1
# A predecessor has not ended (a resumed session, or a chord Celery fired early): look again.
PREDECESSOR_RETRY = 0.2


class Verdict(enum.Enum):
    RUN = "run"  # this delivery holds the claim: run the task
    SESSION_ENDED = "session_ended"  # cancel the task if it is still pending
    DUPLICATE = "duplicate"  # the task has ended: fire nothing
    SKIP = "skip"  # every predecessor ended, some edge is not satisfied
    WAIT = "wait"  # come back after `countdown`
    TIMER = "timer"  # a running timer: end it if due, else come back when it is
    POISON = "poison"  # the task lost its worker too often: fail it


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    attempt: int = 0
    countdown: float = 0.0


def decide(
    snapshot: Snapshot, *, name: str, accepts: dict[str, tuple[str, ...]], lease: datetime, now: datetime,
    max_losses: int, timer: bool,
) -> Decision:
    """Read the verdict for the delivery of task `name` whose claim tried `lease`."""
    own = snapshot.rows[name]
    if own.status in TERMINAL:
        return Decision(Verdict.DUPLICATE)
    if snapshot.session_status not in ACTIVE:
        return Decision(Verdict.SESSION_ENDED)
    if own.status == RUNNING and own.lease_expires_at == lease:
        return Decision(Verdict.RUN, attempt=own.attempts)
    if own.status == PENDING:
        statuses = {pred: snapshot.rows[pred].status for pred in accepts if pred in snapshot.rows}
        if any(statuses.get(pred) not in TERMINAL for pred in accepts):
            return Decision(Verdict.WAIT, countdown=PREDECESSOR_RETRY)
        if not all(statuses[pred] in accepted for pred, accepted in accepts.items()):
            return Decision(Verdict.SKIP)
        return Decision(Verdict.WAIT, countdown=RACE_RETRY)  # a retry gave the claim back just now
    # Running under another claim.
    if timer:
        return Decision(Verdict.TIMER, attempt=own.attempts)
    if own.lease_expires_at and own.lease_expires_at > now:
        return Decision(Verdict.WAIT, countdown=(own.lease_expires_at - now).total_seconds() + 0.5)
    if own.attempts >= max_losses:
        return Decision(Verdict.POISON, attempt=own.attempts)
    return Decision(Verdict.WAIT, countdown=RACE_RETRY)  # another delivery took it over first


def timer_due(*, started_at: datetime, seconds: float, now: datetime) -> float:
    """Seconds until a timer claimed at `started_at` for `seconds` is due (≤ 0: due)."""
    return (started_at + timedelta(seconds=seconds) - now).total_seconds()
