"""The database statements of a running session: one round trip to claim, one to record.

This is the only module that writes task records while a session runs. On PostgreSQL each
operation is one call of a PL/pgSQL function (migration 0009: `junction_claim_v1`,
`junction_apply_v1`) — one network round trip, one implicit transaction, each statement of the
function with its own snapshot, and plans kept per connection instead of planned on every call —
so a worker task costs exactly two round trips:

- `claim`: take the task if it is pending (or its claimant's lease ran out) *and* every
  predecessor ended in a status its edge accepts *and* the session is still active, naming the
  worker that took it (`TaskRun.worker`); mark a queued session running; read back the session
  and the records the task needs.
- `apply`: lock the session row (this serialises the records of one session, so of two tasks
  ending at once the second sees the first), store results (each only if its claim still
  holds) with the session's size and progress clock, then claim or skip the fused tasks that
  just became ready, and read back what the caller needs next: the records those tasks read,
  and every record when no task is left unfinished (the session can end).

`synchronous_commit` is chosen per statement from what a crash may lose (docs/execution.md):
a claim or the record of a pure task can be lost and redone (the sweeper resumes from what is
durable; a pure task gives the same output again), the record of a task with side effects
cannot (it would run again), nor can a new session (the caller holds its id).

Other databases (SQLite in the embedded mode) get the same operations through the ORM inside
one transaction: correct, not tuned.
"""
from __future__ import annotations

import json
import re
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db import DataError, connection, transaction
from django.db.models import F

from config.jsonsize import BoundedJsonError, encode_bounded
from interactions.models import WORKER_MAX_LENGTH, InteractionVersion, Session, TaskRun
from tasks_catalog.base import output_error

from interactions.statuses import CANCELLED, FAILED, PENDING, RUNNING, SKIPPED, SessionStatus
from interactions.statuses import SESSION_ACTIVE as ACTIVE
from interactions.statuses import TASK_TERMINAL as TERMINAL
from interactions.statuses import TASK_UNFINISHED as UNFINISHED
# A NUL character that JSON escaped (not an escaped backslash followed by "u0000"): jsonb
# refuses it, and one refused value would fail the whole round trip.
_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


@dataclass(frozen=True)
class Row:
    """A task's record as read back."""

    status: str
    output: Any = None
    error: str | None = None
    attempts: int = 0
    started_at: datetime | None = None
    finished_at: datetime | None = None
    lease_expires_at: datetime | None = None
    logs: str = ""
    worker: str = ""


@dataclass(frozen=True)
class Snapshot:
    """What a claim saw (after its own update): the session and the rows it asked for."""

    session_status: str | None  # None: the session does not exist (deleted)
    input: Any = None
    user_id: Any = None
    version_id: Any = None
    started_at: datetime | None = None
    rows: dict[str, Row] = field(default_factory=dict)
    end_user_id: Any = None  # the calling end user: whose integrations the tasks use
    others_unfinished: int | None = None  # 0: every other task has ended, and `rows` holds them all


@dataclass(frozen=True)
class Result:
    """A task outcome to store if the claim `attempt` still holds the task."""

    name: str
    attempt: int
    status: str
    output: str | None = None  # encoded JSON
    error: str | None = None
    logs: str = ""  # what a code task printed (tasks_catalog.sandbox.capturing_logs)
    worker: str | None = None  # replaces the claimant's name (a timer ended by another delivery)


@dataclass(frozen=True)
class Applied:
    session_status: str | None
    rows: dict[str, Row]  # the asked-for rows; every row when none is unfinished but those claimed here
    unfinished: int
    claimed: dict[str, int]  # fused tasks claimed by this call -> attempt
    skipped: tuple[str, ...]  # fused tasks skipped by this call
    finished: Finished | None = None  # set when this call ended the session (an `ending` held)
    caller: Caller | None = None  # the session's input and callers, when asked for (`read_caller`)


@dataclass(frozen=True)
class Caller:
    """What the fused tasks of a step need from their session: the caller's input and who called."""

    input: Any
    user_id: Any
    end_user_id: Any = None


@dataclass(frozen=True)
class Ending:
    """The session's outcome if this round trip stores `expect` (task -> status) as given and
    leaves no task unfinished: then the same round trip ends the session (folded end)."""

    status: str
    result: Any
    error: str | None
    expect: dict[str, str]


@dataclass(frozen=True)
class Finished:
    interaction_id: Any
    version: int
    input: Any
    created_at: datetime
    started_at: datetime | None
    end_user_id: Any = None


def encode_output(output: Any) -> tuple[str | None, str | None]:
    """Encode an output for storage; return (json, None) or (None, the reason it cannot be stored).

    The size is measured while encoding (`config.jsonsize.encode_bounded`): an output that
    shares one object many times is refused before gigabytes are built.
    """
    if output is None:
        return None, None
    try:
        encoded = encode_bounded(output, settings.JUNCTION_MAX_OUTPUT_BYTES, max_depth=settings.JUNCTION_MAX_JSON_DEPTH)
    except BoundedJsonError as exc:
        return None, output_error(exc)
    if _NUL.search(encoded):
        return None, "output cannot be stored: the database refuses the NUL character (\\u0000)"
    return encoded, None


def session_too_large() -> str:
    return f"session too large: its outputs exceed {settings.JUNCTION_MAX_SESSION_BYTES} bytes"


def _postgres() -> bool:
    return connection.vendor == "postgresql"


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _rows(found: dict[str, list] | None) -> dict[str, Row]:
    """Rows from `json_build_array(status, output, error, attempts, started, finished, lease, logs, worker)`."""
    return {
        name: Row(status, output, error, attempts, _time(started), _time(finished), _time(lease), logs, worker)
        for name, (status, output, error, attempts, started, finished, lease, logs, worker) in (found or {}).items()
    }


_ROW_FIELDS = ("status", "output", "error", "attempts", "started_at", "finished_at", "lease_expires_at", "logs",
               "worker")


def worker_name(worker: str) -> str:
    """A worker's name as stored: cut to the column's length (a host name may be longer)."""
    return worker[:WORKER_MAX_LENGTH]


# --- a new session ----------------------------------------------------------------------------

# A refused call's marker, in the error the insert function raises (migration 0012).
_QUOTA_MARKER = "too_many_active_sessions"
_STALE_MARKER = "stale_read"
_INSERT_SQL = "SELECT junction_insert_session_v1(%s, %s, %s, %s)"


class TooManyActive(Exception):
    """The user already has the most active sessions allowed: nothing was written."""


class StaleRead(Exception):
    """What the call read from a cache is no longer true: nothing was written."""


@dataclass(frozen=True)
class Expected:
    """What a run call took from the process's caches (config/hotcache.py), checked in the round
    trip that writes its session: the caller (user, and API key if any) is still allowed in and
    the interaction is still active with the same current version and deadline."""

    user_id: Any
    token_version: int
    plan: str
    interaction_id: Any
    version_id: Any
    deadline_seconds: int | None
    api_key_id: Any | None = None

    def as_json(self) -> str:
        """The insert function's `p_expected` (migration 0012)."""
        from django.utils import timezone

        return json.dumps({
            "user": str(self.user_id), "token_version": self.token_version, "plan": self.plan,
            "interaction": str(self.interaction_id), "version": str(self.version_id),
            "deadline_seconds": self.deadline_seconds,
            "api_key": str(self.api_key_id) if self.api_key_id is not None else None,
            "now": timezone.now().isoformat(),
        })

    def holds(self) -> bool:
        """The same check through the ORM (other databases)."""
        from django.db.models import Q
        from django.utils import timezone

        from accounts.models import ApiKey
        from interactions.models import Interaction

        if not Interaction.objects.filter(
            pk=self.interaction_id, is_active=True, current_version_id=self.version_id,
            deadline_seconds=self.deadline_seconds, user_id=self.user_id, user__is_active=True,
            user__token_version=self.token_version, user__plan=self.plan,
        ).exists():
            return False
        return self.api_key_id is None or ApiKey.objects.filter(
            Q(expires_at__isnull=True) | Q(expires_at__gt=timezone.now()),
            pk=self.api_key_id, user_id=self.user_id, revoked_at__isnull=True,
        ).exists()


def insert_session(
    session: Session, runs: list[TaskRun], *, active_limit: int, expected: Expected | None = None,
) -> None:
    """Write a new session and its task records together (one round trip on PostgreSQL).

    In the same round trip, before writing: raises StaleRead if `expected` (what the call read
    from caches) no longer holds, and TooManyActive if the session's user already has
    `active_limit` queued or running sessions — nothing is written then. The limit is not a
    lock: calls of one user at the same instant may each see room (interactions/quotas.py).
    Synchronous commit (the server's default): a session is never lost once the caller has its
    id. Raises IntegrityError as `Model.save` would (e.g. an idempotency key taken meanwhile).
    """
    if not _postgres():
        with transaction.atomic():
            if expected is not None and not expected.holds():
                raise StaleRead()
            active = Session.objects.filter(user_id=session.user_id, status__in=ACTIVE).values("pk")
            if active[:active_limit].count() >= active_limit:
                raise TooManyActive()
            session.save(force_insert=True)
            TaskRun.objects.bulk_create(runs)
        return
    # Outside a transaction the call is one implicit transaction of its own; inside one (a
    # caller's), a savepoint keeps a refused insert from breaking it.
    try:
        with transaction.atomic() if connection.in_atomic_block else nullcontext():
            with connection.cursor() as cursor:
                cursor.execute(_INSERT_SQL, [_row_json(session), "[" + ",".join(_row_json(run) for run in runs) + "]",
                                             active_limit, expected.as_json() if expected is not None else None])
    except DataError as error:
        if _STALE_MARKER in str(error):
            raise StaleRead() from None
        if _QUOTA_MARKER in str(error):
            raise TooManyActive() from None
        raise
    for obj in (session, *runs):
        obj._state.adding, obj._state.db = False, connection.alias


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()  # every digit: DjangoJSONEncoder keeps only milliseconds
    if isinstance(value, UUID):
        return str(value)
    raise TypeError(f"cannot encode {type(value).__name__}")


def _row_json(obj: Session | TaskRun) -> str:
    """A new row as a JSON object keyed by column, the values as Django would save them."""
    return json.dumps({field.column: field.pre_save(obj, True) for field in obj._meta.concrete_fields},
                      default=_json_value, separators=(",", ":"))


# --- claim ------------------------------------------------------------------------------------

# The claim and the record are PL/pgSQL functions (migration 0009): planned once per connection.
_CLAIM_SQL = "SELECT * FROM junction_claim_v1(%s, %s, %s, %s, %s, %s, %s, %s, %s)"
_APPLY_SQL = ("SELECT * FROM junction_apply_v1(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, "
              "%s)")


def claim(
    *, session_id, name: str, names: list[str], accepts: str, now: datetime, lease: datetime,
    max_losses: int, timer: bool, worker: str,
) -> Snapshot:
    """Try to claim task `name` for `worker`; return what the claim saw (`rows` holds `names`, own included).

    The task is claimed when its row shows `running` with `lease` as its lease (and `worker`
    as its worker). A `timer` task is never taken over: any delivery may end it once it is due.
    """
    worker = worker_name(worker)
    if not _postgres():
        return _orm_claim(session_id=session_id, name=name, names=names, accepts=json.loads(accepts), now=now,
                          lease=lease, max_losses=max_losses, timer=timer, worker=worker)
    with connection.cursor() as cursor:
        cursor.execute(_CLAIM_SQL, [session_id, name, names, accepts, now, lease, max_losses, timer, worker])
        found = cursor.fetchone()
    if found is None:
        return Snapshot(session_status=None)
    status, raw_input, user_id, version_id, started_at, end_user_id, rows, others_unfinished = found
    return Snapshot(status, json.loads(raw_input), user_id, version_id, started_at, _rows(json.loads(rows or "null")),
                    end_user_id, others_unfinished)


def _orm_claim(*, session_id, name, names, accepts, now, lease, max_losses, timer, worker) -> Snapshot:
    with transaction.atomic():
        session = Session.objects.filter(pk=session_id).first()
        if session is None:
            return Snapshot(session_status=None)
        runs = TaskRun.objects.filter(session_id=session_id)
        preds = list(runs.filter(name__in=list(accepts)).values_list("name", "status", "finished_at"))
        statuses = {pred: status for pred, status, _ in preds}
        started = max([now] + [finished for _, _, finished in preds if finished])
        ready = all(statuses.get(pred) in accepted for pred, accepted in accepts.items())
        if session.status in ACTIVE and ready:
            own = runs.filter(name=name).values("status", "attempts", "lease_expires_at").first()
            takeover = (
                own and own["status"] == RUNNING and not timer and own["attempts"] < max_losses
                and own["lease_expires_at"] and own["lease_expires_at"] <= now
            )
            if own and (own["status"] == PENDING or takeover):
                runs.filter(name=name, status=own["status"], attempts=own["attempts"]).update(
                    status=RUNNING, attempts=own["attempts"] + 1, started_at=started, updated_at=now,
                    lease_expires_at=lease, worker=worker,
                )
        if session.status == SessionStatus.QUEUED:
            Session.objects.filter(pk=session_id, status=SessionStatus.QUEUED).update(status=SessionStatus.RUNNING, started_at=now, updated_at=now)
            session.refresh_from_db(fields=["status", "started_at"])
        rows = {run["name"]: Row(*(run[f] for f in _ROW_FIELDS))
                for run in runs.filter(name__in=names).values("name", *_ROW_FIELDS)}
    return Snapshot(session.status, session.input, session.user_id, session.version_id, session.started_at, rows,
                    session.end_user_id)


# --- apply: record results, claim or skip what became ready -------------------------------------

def apply(
    *, session_id, results: Sequence[Result] = (), skips: Sequence[str] = (), candidates: dict[str, str] | None = None,
    reads: AbstractSet[str] = frozenset(), now: datetime, lease: datetime | None = None, durable: bool = False,
    worker: str = "",
    ending: Ending | None = None,
    read_caller: bool = False,
) -> Applied:
    """Store `results` and `skips`, then claim (or skip) the `candidates` whose predecessors ended.

    `candidates` maps a fused task to its accepts JSON ({predecessor: [statuses]}); a candidate
    whose predecessors all ended is claimed (`lease`, for `worker`) when they satisfy its edges,
    else skipped.
    A result is stored only while its task is `running` under that attempt (a cancel or a
    take-over that came first wins), and only a stored result grows the session; one that would
    push the session past JUNCTION_MAX_SESSION_BYTES is stored as failed. Reads back `reads`, the recorded tasks and
    the candidates, or every task when none is left unfinished. With an `ending` (and no
    candidates), ends the session in the same round trip when it holds (`Applied.finished`);
    other databases end it apart (the caller does, as for any round trip that leaves none).
    With `read_caller`, also reads the session's input and callers (`Applied.caller`), for a
    step that did not claim its task (a timer's due delivery) and so has not read them.
    """
    candidates = candidates or {}
    names = sorted(set(reads) | {r.name for r in results} | set(skips) | set(candidates))
    worker = worker_name(worker)
    if not _postgres():
        return _orm_apply(session_id=session_id, results=results, skips=skips, candidates=candidates, names=names,
                          now=now, lease=lease, worker=worker, read_caller=read_caller)
    if candidates:
        ending = None
    try:
        return _pg_apply(session_id, results, skips, candidates, names, now, lease, durable, worker, ending,
                         read_caller)
    except DataError as exc:
        # A value jsonb refuses that `encode_output` did not foresee: store the failures instead
        # (and end apart: the ending assumed the outputs).
        reason = f"output cannot be stored: {str(exc).splitlines()[0]}"
        failed = [Result(r.name, r.attempt, FAILED, None, reason, worker=r.worker) if r.output else r
                  for r in results]
        return _pg_apply(session_id, failed, skips, candidates, names, now, lease, durable, worker, None, read_caller)


def _results_json(results: Sequence[Result]) -> str:
    """The results as the apply function's JSON array; each output is spliced in as encoded."""
    return "[" + ",".join(
        '{"n":%s,"a":%d,"s":%s,"o":%s,"e":%s,"l":%s,"w":%s,"z":%d}' % (
            json.dumps(r.name), r.attempt, json.dumps(r.status), r.output or "null", json.dumps(r.error),
            json.dumps(r.logs), json.dumps(worker_name(r.worker) if r.worker else None),
            len(r.output or "") + len(r.logs))
        for r in results
    ) + "]"


def _pg_apply(session_id, results, skips, candidates, names, now, lease, durable, worker, ending,
              read_caller=False) -> Applied:
    with connection.cursor() as cursor:
        cursor.execute(_APPLY_SQL, [
            session_id, now, durable, settings.JUNCTION_MAX_SESSION_BYTES, session_too_large(),
            _results_json(results), list(skips),
            list(candidates), json.dumps({k: json.loads(v) for k, v in candidates.items()}), lease, worker,
            names,
            *((ending.status, json.dumps(ending.result, separators=(",", ":")) if ending.result is not None else None,
               ending.error, json.dumps(ending.expect)) if ending is not None else (None, None, None, None)),
            read_caller,
        ])
        session_status, unfinished, rows, changed, ended, raw_caller = cursor.fetchone()
    caller = Caller(*json.loads(raw_caller)) if raw_caller else None
    finished = None
    if ended:
        interaction_id, version, raw_input, created_at, started_at, end_user_id = json.loads(ended)
        finished = Finished(interaction_id, version, raw_input, datetime.fromisoformat(created_at), _time(started_at),
                            end_user_id)
    found = _rows(json.loads(rows or "null"))
    changed_rows = _rows(json.loads(changed or "null"))
    found.update(changed_rows)
    claimed = {name: row.attempts for name, row in changed_rows.items() if row.status == RUNNING}
    skipped = tuple(sorted(name for name, row in changed_rows.items() if row.status == SKIPPED))
    return Applied(session_status, found, unfinished, claimed, skipped, finished, caller)


def _orm_apply(*, session_id, results, skips, candidates, names, now, lease, worker, read_caller=False) -> Applied:
    claimed: dict[str, int] = {}
    skipped: list[str] = []
    with transaction.atomic():
        Session.objects.filter(pk=session_id).update(updated_at=now)
        runs = TaskRun.objects.filter(session_id=session_id)
        for result in results:
            if not runs.filter(name=result.name, status=RUNNING, attempts=result.attempt).exists():
                continue  # the claim no longer holds: nothing stored, the session does not grow
            size = len(result.output or "") + len(result.logs)
            grown = Session.objects.filter(
                pk=session_id, size_bytes__lte=settings.JUNCTION_MAX_SESSION_BYTES - size
            ).update(size_bytes=F("size_bytes") + size)
            status, output, error, logs = result.status, result.output, result.error, result.logs
            if not grown:
                status, output, error, logs = FAILED, None, session_too_large(), ""
            runs.filter(name=result.name, status=RUNNING, attempts=result.attempt).update(
                status=status, output=json.loads(output) if output else None, error=error, logs=logs,
                finished_at=now, updated_at=now, lease_expires_at=None,
                **({"worker": worker_name(result.worker)} if result.worker else {}),
            )
        if skips:
            runs.filter(name__in=list(skips), status=PENDING).update(status=SKIPPED, finished_at=now, updated_at=now)
        session_status = Session.objects.filter(pk=session_id).values_list("status", flat=True).first()
        if candidates and session_status in ACTIVE:
            for name, accepts in candidates.items():
                wanted = json.loads(accepts)
                preds = list(runs.filter(name__in=list(wanted)).values_list("name", "status", "finished_at"))
                statuses = {pred: status for pred, status, _ in preds}
                if any(statuses.get(pred) not in TERMINAL for pred in wanted):
                    continue
                at = max([now] + [finished for _, _, finished in preds if finished])
                if all(statuses[pred] in accepted for pred, accepted in wanted.items()):
                    if runs.filter(name=name, status=PENDING).update(
                        status=RUNNING, attempts=F("attempts") + 1, started_at=at, updated_at=now,
                        lease_expires_at=lease, worker=worker,
                    ):
                        claimed[name] = runs.get(name=name).attempts
                elif runs.filter(name=name, status=PENDING).update(status=SKIPPED, finished_at=at, updated_at=now):
                    skipped.append(name)
        unfinished = runs.filter(status__in=UNFINISHED).count()
        wanted = runs if unfinished <= len(claimed) else runs.filter(name__in=names)
        rows = {run["name"]: Row(*(run[f] for f in _ROW_FIELDS)) for run in wanted.values("name", *_ROW_FIELDS)}
    caller = None
    if read_caller:
        found = Session.objects.filter(pk=session_id).values("input", "user_id", "end_user_id").first()
        caller = Caller(found["input"], found["user_id"], found["end_user_id"]) if found else None
    return Applied(session_status, rows, unfinished, claimed, tuple(skipped), None, caller)


# --- the rest of a task's life ------------------------------------------------------------------

def mark_waiting(*, session_id, now: datetime, stall_seconds: float) -> None:
    """Note that a session's task is waiting for a slow-task slot (interactions/slots.py): the
    session makes no progress meanwhile, but is not stalled, so the sweeper must not resume it.

    Writes at most once per third of JUNCTION_STALL_SECONDS (a conditional UPDATE otherwise
    changes nothing); the session's deadline still bounds the wait.
    """
    Session.objects.filter(
        pk=session_id, status__in=ACTIVE, updated_at__lt=now - timedelta(seconds=stall_seconds / 3),
    ).update(updated_at=now)


def give_back(*, session_id, name: str, attempt: int, error: str, now: datetime) -> bool:
    """Return a claim for a retry: the next delivery claims the task again as attempt + 1."""
    return bool(TaskRun.objects.filter(session_id=session_id, name=name, status=RUNNING, attempts=attempt).update(
        status=PENDING, error=error, updated_at=now, lease_expires_at=None,
    ))


def cancel_pending(*, session_id, name: str, now: datetime) -> None:
    """A task delivered after its session ended never starts."""
    TaskRun.objects.filter(session_id=session_id, name=name, status=PENDING).update(
        status=CANCELLED, finished_at=now, updated_at=now,
    )


_FINISH_SQL = """
SET LOCAL synchronous_commit TO OFF;
UPDATE interactions_session s
   SET status = %(status)s, result = %(result)s::jsonb, error = %(error)s, finished_at = %(now)s,
       updated_at = %(now)s
  FROM interactions_interactionversion v
 WHERE s.id = %(sid)s AND s.status IN ('queued', 'running') AND v.id = s.version_id
RETURNING s.interaction_id, v.number, s.input::text, s.created_at, s.started_at, s.end_user_id
"""


def finish(*, session_id, status: str, result: Any, error: str | None, now: datetime) -> Finished | None:
    """End an active session; return what its representation needs, or None if it had ended.

    Not durable on its own (synchronous_commit off): a lost end is found again by the sweeper
    from the durable task records and computed to the same outcome.
    """
    encoded = json.dumps(result, separators=(",", ":")) if result is not None else None
    if _postgres():
        with connection.cursor() as cursor:
            cursor.execute(_FINISH_SQL, {"sid": session_id, "status": status, "result": encoded, "error": error,
                                         "now": now})
            found = cursor.fetchone()
        if found is None:
            return None
        interaction_id, version, raw_input, created_at, started_at, end_user_id = found
        return Finished(interaction_id, version, json.loads(raw_input), created_at, started_at, end_user_id)
    with transaction.atomic():
        if not Session.objects.filter(pk=session_id, status__in=ACTIVE).update(
            status=status, result=result, error=error, finished_at=now, updated_at=now,
        ):
            return None
        session = Session.objects.get(pk=session_id)
        number = InteractionVersion.objects.values_list("number", flat=True).get(pk=session.version_id)
    return Finished(session.interaction_id, number, session.input, session.created_at, session.started_at,
                    session.end_user_id)
