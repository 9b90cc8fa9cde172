"""Run one step of a session on a worker, and end the session: the services behind Celery's tasks.

A step is one task that needs a worker, plus the fused (pure) tasks it makes ready:

0. a task of a slow type takes one of its user's slots (`slots.take`), or comes back later
   unclaimed when its user has none free;
1. claim the task (`runstore.claim`, one round trip) and read the verdict (`claims.decide`);
2. run it — a `timer` task (delay) instead keeps its claim and comes back when due;
3. record it (`runstore.apply`, one round trip), which also claims the fused tasks whose
   predecessors have now all ended; run those here, in memory, and record them the same way,
   until nothing more is ready;
4. the round trip that leaves no task unfinished returns every record: this step computes the
   session's outcome, ends it and publishes the end to waiting callers.

No exception of a task type escapes: failures are results, so a chord never breaks.
"""
from __future__ import annotations

import functools
import json
import logging
import random
import socket
import time
import traceback
from dataclasses import dataclass, replace
from functools import partial
from datetime import datetime, timedelta
from collections.abc import Sequence
from typing import Any, Protocol
from uuid import UUID

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.utils import timezone
from jmespath.exceptions import JMESPathError

from config import metrics, oplog
from config.bounds import resolve_limits
from integrations.encryption import DecryptionError
from integrations.models import Integration
from integrations.providers import Provider, providers
from integrations.redaction import redact, secret_forms
from integrations.services import integration_credentials
from interactions import claims, events, runstore, selectors, slots
from interactions.claims import Verdict
from interactions.compiled import CompiledVersion, compiled_version
from interactions.engine.execution import SKIPPED, Record, resolve_body, session_outcome
from interactions.models import InteractionVersion, Session
from interactions.runstore import Result
from interactions.statuses import COMPLETED, FAILED, PENDING, RUNNING, SESSION_ACTIVE, TASK_UNFINISHED
from tasks_catalog.base import TaskContext, TaskFailed, TaskType
from tasks_catalog.registry import task_types
from tasks_catalog.sandbox import capturing_logs

logger = logging.getLogger(__name__)


# A task waiting for one of its user's slow-task slots comes back after this many seconds (a
# uniform pick, so that the waiting tasks of one user do not all come back at once).
SLOT_RETRY = (0.5, 2.0)


class Duplicate(Exception):
    """This delivery's task has already ended (or its session is gone): fire nothing."""


@dataclass(frozen=True)
class RetryLater(Exception):
    """Deliver this task again after `countdown` s (a transient failure with retries left, a
    predecessor not yet ended, a claim held by a delivery that may still be alive, a timer, no
    free slow-task slot)."""

    countdown: float


class ChainRest(Protocol):
    """The links after a step in its Celery chain (interactions/tasks.py): the step runs the next
    one itself, instead of a broker hop, when the version says it may (`CompiledVersion.follows`)
    and its timeout fits in the step's time (docs/execution.md, "Chains run in one step")."""

    def remaining(self) -> float:
        """Seconds left before the step's soft time limit."""

    def peek(self) -> str | None:
        """The task of the chain's next message, if it is a plain step of this session."""

    def take(self) -> None:
        """This step runs the next link: its message is not to be sent."""

    def stored(self) -> None:
        """The link taken last is recorded."""

    def hand_over(self, countdown: float) -> bool:
        """Send the link taken last (with the rest of the chain) after `countdown` s, instead of
        running it here: its claim was given back to retry it later."""


def backoff(attempt: int) -> float:
    """Exponential backoff with full jitter: up to 1, 2, 4 … seconds (capped at 60)."""
    return random.uniform(0, min(60.0, 2.0 ** (attempt - 1)))


@functools.cache
def call_worker() -> str:
    """The `worker` recorded for tasks run outside a Celery worker: `api@<hostname>`.

    That is the process that took the call (the fused tasks a new session runs at once), or one
    that called the executor directly (the embedded mode's sweeper thread, tests). A Celery
    task passes its worker's node name instead (`self.request.hostname`, e.g. `celery@host-b`).
    """
    return f"api@{socket.gethostname()}"


def lease_seconds(timeout: float) -> float:
    return timeout + settings.JUNCTION_HARD_TIMEOUT_GRACE + settings.JUNCTION_LEASE_GRACE


def step_lease_seconds(timeout: float, chain: ChainRest | None) -> float:
    """A claim made by a step outlasts the step's hard time limit: a step that may run the next
    links of its chain was sent with more time than its own task's timeout."""
    return max(lease_seconds(timeout), lease_seconds(chain.remaining()) if chain is not None else 0.0)


def task_timeout(compiled: CompiledVersion, name: str) -> float:
    return compiled.definition.tasks[name].timeout or settings.JUNCTION_DEFAULT_TASK_TIMEOUT


# --- running a task type ---------------------------------------------------------------------

def _redact(text: str, secrets: list[str]) -> str:
    return redact(text, secrets)


def _run(task_type, body: dict[str, Any], context: TaskContext, secrets: list[str]) -> Any:
    """Call the task type; turn every exception into TaskFailed with a readable message.

    The integration's secret values are cut out of every message and log line: a library's
    exception may quote what it was given.
    """
    try:
        output = task_type.run(body, context)
    except TaskFailed as failure:
        if not secrets:
            raise
        raise TaskFailed(_redact(str(failure), secrets), transient=failure.transient) from None
    except SoftTimeLimitExceeded:
        raise TaskFailed(f"timed out after {context.timeout:g} s") from None
    except Exception as exc:  # a bug in a task type must fail the task, not the chord
        logger.error("task type %s raised:\n%s", task_type.key, _redact(traceback.format_exc(), secrets))
        raise TaskFailed(_redact(f"{type(exc).__name__}: {exc}", secrets)) from None
    return output


def _check(task_type: TaskType, body: dict[str, Any]) -> None:
    problems = task_type.check_body(body)
    if problems:
        raise TaskFailed("; ".join(f"{name}: {' '.join(found)}" for name, found in problems.items()))


def _integration(task_type: TaskType, integration_id: str | None, user_id, end_user_id) -> Integration | None:
    """The integration a task uses (one query), or None for a type that takes none.

    A definition's own integration is the builder's (never an end user's). A task that needs
    one and names none uses the calling end user's integration of the type's provider (the
    newest, when they connected several): docs/end-users.md. Raises TaskFailed saying which
    account to connect when there is none.
    """
    if integration_id:
        integration = (Integration.objects.select_related("provider_app")
                       .filter(pk=integration_id, user_id=user_id, end_user__isnull=True).first())
        if integration is None:
            raise TaskFailed(f"integration {integration_id} no longer exists")
        return integration
    if task_type.provider is None:
        return None
    if end_user_id is None:
        raise TaskFailed(
            f"this task uses the caller's own {task_type.provider} account, and this call was not made by an end "
            f"user: call the interaction with an end user's token, after they connect a {task_type.provider} account"
        )
    integration = (Integration.objects.select_related("provider_app")
                   .filter(end_user_id=end_user_id, provider=task_type.provider)
                   .order_by("-created_at").first())
    if integration is None:
        raise TaskFailed(f"connect a {task_type.provider} account: the calling end user has no "
                         f"{task_type.provider} integration (POST /api/apps/{{slug}}/connect/{{provider_app_id}}/)")
    return integration


def run_with_body(
    *, task_type: TaskType, body: dict[str, Any], integration_id: str | None, user_id, timeout: float,
    end_user_id=None,
) -> Any:
    """Check a concrete body, load the integration's credentials, run the task type.

    Raises TaskFailed naming the field for a bad value, a missing integration, or the task's
    own failure.
    """
    _check(task_type, body)
    integration = _integration(task_type, integration_id, user_id, end_user_id)
    if integration is None:
        return _run(task_type, body, TaskContext(timeout=timeout), [])
    try:
        credentials = integration_credentials(integration=integration)
    except DecryptionError:
        raise TaskFailed(
            f"the secrets of integration {integration.name!r} cannot be decrypted with the "
            f"server's keys (JUNCTION_ENCRYPTION_KEYS changed?)"
        ) from None
    provider = providers.get(integration.provider)
    context = TaskContext(timeout=timeout, connect=partial(_client, provider, credentials))
    return _run(task_type, body, context, secret_forms(credentials, provider))


def _client(provider: Provider, credentials: dict[str, Any], timeout: float) -> Any:
    return provider.client(credentials, timeout=timeout)


def resolve_task_body(compiled: CompiledVersion, name: str, caller_input: Any, records: dict[str, Record]) -> dict[str, Any]:
    """Resolve task `name`'s concrete body; raise TaskFailed if a reference cannot be resolved."""
    try:
        return resolve_body(compiled.definition.tasks[name], compiled.defaults[name], caller_input or {}, records,
                            limits=resolve_limits(timeout=task_timeout(compiled, name)))
    except JMESPathError as exc:
        raise TaskFailed(f"a reference could not be resolved: {exc}") from None


def run_pure(
    compiled: CompiledVersion, name: str, *, caller_input: Any, records: dict[str, Record], user_id
) -> tuple[str, Any, str | None, str | None]:
    """Run a fused (pure) task in this process; return (status, output, encoded output, error)."""
    spec = compiled.definition.tasks[name]
    started = time.monotonic()
    error: str | None
    encoded: str | None
    try:
        body = resolve_task_body(compiled, name, caller_input, records)
        output = run_with_body(task_type=task_types.get(spec.type), body=body, integration_id=None,
                               user_id=user_id, timeout=task_timeout(compiled, name))
    except TaskFailed as failure:
        status, output, encoded, error = FAILED, None, None, str(failure)
    else:
        encoded, error = runstore.encode_output(output)
        status = FAILED if error else COMPLETED
        output = None if error else output
    metrics.task_finished(spec.type, status, time.monotonic() - started)
    return status, output, encoded, error


# --- a worker step ----------------------------------------------------------------------------

@dataclass(frozen=True)
class _Session:
    """What every part of a step needs to know about its session."""

    id: Any
    compiled: CompiledVersion
    input: Any
    user_id: Any
    worker: str = ""  # recorded on the fused tasks this step claims
    end_user_id: Any = None
    # False for a step that did not claim its task (a timer's due delivery): `input` and the
    # callers are then read by the round trip that claims fused tasks (runstore.apply).
    known: bool = True


def task_execute(*, session_id: UUID | str, name: str, version_id: UUID | str | None = None,
                 now: datetime | None = None, user_id: UUID | str | None = None, worker: str | None = None,
                 due: float | None = None, timer_error: str | None = None, chain: ChainRest | None = None) -> None:
    """Run task `name` of a session once and record it, with the fused tasks it makes ready
    and, given the rest of its Celery `chain`, the next links it may run itself.

    A task of a slow type first takes one of its user's slots (`slots.take`; `user_id` comes
    with the message): with none free it is not claimed and comes back later (RetryLater).
    `worker` (default `call_worker()`) is recorded as where the task and those fused tasks
    ran. A timer that the call claimed comes with its `due` time (epoch seconds) and, when its
    wait is longer than its timeout, the error it ends with: that delivery needs no claim, only
    the round trip that records it (`_timer_due`). Raises Duplicate when the task has already
    ended (the caller fires nothing), RetryLater when it must be delivered again later.
    """
    now = now or timezone.now()
    worker = worker or call_worker()
    if version_id is None:  # a message sent before version ids travelled with it
        version_id = Session.objects.filter(pk=session_id).values_list("version_id", flat=True).first()
        if version_id is None:
            raise Duplicate
    try:
        compiled = compiled_version(version_id)
    except InteractionVersion.DoesNotExist:
        raise Duplicate from None  # the interaction was deleted with its sessions
    spec = compiled.definition.tasks[name]
    task_type = task_types.get(spec.type)
    if due is not None and task_type.timer:
        _timer_due(session_id=session_id, name=name, compiled=compiled, due=due, error=timer_error, worker=worker)
        return
    timeout = task_timeout(compiled, name)
    lease_for = step_lease_seconds(timeout, chain)
    slot = None
    if task_type.slow and user_id is not None:  # (a message sent before user ids travelled: no slot)
        slot = slots.take(user_id=user_id, lease_seconds=lease_for, label=f"{session_id}.{name}")
        if slot is None:
            runstore.mark_waiting(session_id=session_id, now=now, stall_seconds=settings.JUNCTION_STALL_SECONDS)
            raise RetryLater(random.uniform(*SLOT_RETRY))
    try:
        _execute(session_id=session_id, name=name, compiled=compiled, task_type=task_type, lease_for=lease_for,
                 now=now, worker=worker or call_worker(), chain=chain if slot is not None or not task_type.slow else None)
    finally:
        if slot is not None:
            slot.release()


def _timer_due(*, session_id: UUID | str, name: str, compiled: CompiledVersion, due: float, error: str | None,
               worker: str) -> None:
    """End a timer the call claimed (attempt 1) once it is due: one round trip, no claim.

    The record holds only while that claim does (runstore.apply's condition), so a session
    cancelled meanwhile, or a second delivery, stores nothing and runs nothing.
    """
    remaining = due - time.time()
    if remaining > 0:
        raise RetryLater(remaining)
    timers_due(session_id=session_id, compiled=compiled, timers={name: error}, worker=worker)


def timers_due(*, session_id: UUID | str, compiled: CompiledVersion, timers: dict[str, str | None],
               worker: str | None = None) -> None:
    """Record timers the call claimed, now due ({task: the error it ends with, or None}), in one
    round trip, then run what they make ready — the session's end included (`advance`).

    A timer's Celery delivery calls this (`_timer_due`), and so does the process that took a
    waiting call when it holds the session's timers itself (interactions/holding.py). Each record
    holds only while the call's claim does: a session cancelled meanwhile, or a second delivery,
    stores nothing and runs nothing.
    """
    worker = worker or call_worker()
    results = [Result(name, 1, FAILED, error=error, worker=worker) if error
               else Result(name, 1, COMPLETED, "{}", worker=worker) for name, error in sorted(timers.items())]
    advance(_Session(session_id, compiled, None, None, worker=worker, known=False), results=results)


def _execute(*, session_id: UUID | str, name: str, compiled: CompiledVersion, task_type: TaskType, lease_for: float,
             now: datetime, worker: str, chain: ChainRest | None = None) -> None:
    """Claim task `name`, then run it (or not, as the verdict says) and record it."""
    spec = compiled.definition.tasks[name]
    lease = now + timedelta(seconds=lease_for)
    snapshot = runstore.claim(
        session_id=session_id, name=name, names=sorted(compiled.needs[name] | {name}),
        accepts=compiled.accepts[name], now=now, lease=lease,
        max_losses=settings.JUNCTION_MAX_WORKER_LOSSES, timer=task_type.timer, worker=worker,
    )
    if snapshot.session_status is None:
        raise Duplicate  # the session was deleted
    decision = claims.decide(
        snapshot, name=name, accepts=spec.execute_after, lease=lease, now=now,
        max_losses=settings.JUNCTION_MAX_WORKER_LOSSES, timer=task_type.timer,
    )
    session = _Session(session_id, compiled, snapshot.input, snapshot.user_id, worker=worker,
                       end_user_id=snapshot.end_user_id)
    verdict = decision.verdict
    if verdict is Verdict.SESSION_ENDED:
        runstore.cancel_pending(session_id=session_id, name=name, now=now)
        return
    if verdict is Verdict.DUPLICATE:
        raise Duplicate
    if verdict is Verdict.WAIT:
        raise RetryLater(decision.countdown)
    # Every other task has ended: this task's round trip can end the session (`advance`).
    last = snapshot.rows if snapshot.others_unfinished == 0 else None
    if verdict is Verdict.SKIP:
        advance(session, skips=[name], rows=last, chain=chain, link=name)
        return
    if verdict is Verdict.POISON:
        oplog.task_poisoned(session_id, name, decision.attempt, type=spec.type)
        advance(session, results=[Result(name, decision.attempt, FAILED, error=(
            f"the worker running this task was lost {decision.attempt} times; "
            f"giving up (a task that kills its worker?)"
        ))], rows=last)
        return

    if verdict is Verdict.RUN:
        if decision.attempt > 1 and snapshot.rows[name].error is None:  # no retry gave it back: a lost worker's
            oplog.task_taken_over(session_id, name, decision.attempt, type=spec.type)
        _announce(session_id, snapshot.rows, [name])
    records = {task: Record(row.status, row.output, row.error) for task, row in snapshot.rows.items() if task != name}
    if task_type.timer:
        result = _timer(session, name, task_type, records, snapshot.rows[name], decision.attempt, now)
    else:
        result = _work(session, name, task_type, records, decision.attempt)
    advance(session, results=[result], durable=not (task_type.pure or task_type.timer), rows=last, chain=chain,
            link=name)


def _work(session: _Session, name: str, task_type: TaskType, records: dict[str, Record], attempt: int) -> Result:
    """Run a claimed task; return its result, or raise RetryLater having given the claim back."""
    spec = session.compiled.definition.tasks[name]
    started = time.monotonic()
    try:
        with capturing_logs() as printed:  # what a code task prints, kept beside its output
            body = resolve_task_body(session.compiled, name, session.input, records)
            output = run_with_body(
                task_type=task_type, body=body, integration_id=spec.integration, user_id=session.user_id,
                timeout=task_timeout(session.compiled, name), end_user_id=session.end_user_id,
            )
    except TaskFailed as failure:
        if failure.transient and attempt <= spec.retries:
            runstore.give_back(session_id=session.id, name=name, attempt=attempt, error=str(failure),
                               now=timezone.now())
            countdown = backoff(attempt)
            oplog.task_retry(session.id, name, spec.type, str(failure), attempt, countdown)
            raise RetryLater(countdown) from None
        result = Result(name, attempt, FAILED, error=str(failure), logs=printed.text or "")
    else:
        encoded, problem = runstore.encode_output(output)
        result = Result(name, attempt, FAILED, error=problem, logs=printed.text or "") if problem else \
            Result(name, attempt, COMPLETED, encoded, logs=printed.text or "")
    metrics.task_finished(spec.type, result.status, time.monotonic() - started)
    if result.status == FAILED:
        oplog.task_failed(session.id, name, spec.type, result.error, attempt)
    return result


def _timer(session: _Session, name: str, task_type: TaskType, records: dict[str, Record], own, attempt: int,
           now: datetime) -> Result:
    """End a timer task that is due; raise RetryLater (keeping the claim) until it is."""
    timeout = task_timeout(session.compiled, name)
    try:
        body = resolve_task_body(session.compiled, name, session.input, records)
        _check(task_type, body)
    except TaskFailed as failure:
        return Result(name, attempt, FAILED, error=str(failure))
    wanted = task_type.wait_seconds(body)
    remaining = claims.timer_due(started_at=own.started_at, seconds=min(wanted, timeout), now=now)
    if remaining > 0:
        raise RetryLater(remaining)
    # The claim may be another delivery's (or the call's): the worker that ends the wait is named.
    if wanted > timeout:
        return Result(name, attempt, FAILED, error=f"timed out after {timeout:g} s", worker=session.worker)
    return Result(name, attempt, COMPLETED, "{}", worker=session.worker)


def advance(session: _Session, *, results: Sequence[Result] = (), skips: Sequence[str] = (), durable: bool = False,
            candidates_of: set[str] | None = None, rows: dict[str, runstore.Row] | None = None,
            chain: ChainRest | None = None, link: str = "") -> None:
    """Record, then run the fused tasks that became ready, round trip by round trip.

    Each round trip stores the previous results and claims (or skips) the fused dependants
    whose predecessors have all ended; the claimed ones run here, in memory, and go into the
    next round trip. The round trip that leaves no task unfinished ends the session — in that
    same round trip when it can be foreseen: `rows` are every task's records when all but the
    ones recorded now have ended (a claim, or the round trip before, says so).
    `candidates_of` (default: the recorded and skipped tasks) names the tasks whose fused
    dependants are looked at first.
    With the rest of the step's Celery `chain`, the chain's next link after `link` (the task the
    step ran) is a candidate too, while the version allows it and its timeout fits in the step's
    time left: claimed, it runs here like the step's own task (its message is not sent).
    """
    compiled = session.compiled
    changed = set(candidates_of) if candidates_of is not None else {r.name for r in results} | set(skips)
    while True:
        ending = _foreseen_end(compiled, rows, results, skips) if rows is not None else None
        candidates = {} if ending else {name: compiled.accepts[name] for name in compiled.fused_dependants(changed)}
        follow = _next_link(compiled, chain, link) if chain is not None and session.known and not ending else None
        if follow is not None:
            candidates[follow] = compiled.accepts[follow]
        now = timezone.now()
        lease = now + timedelta(seconds=step_lease_seconds(
            max((task_timeout(compiled, name) for name in candidates), default=0.0),
            chain if follow is not None else None))
        applied = runstore.apply(
            session_id=session.id, results=list(results), skips=list(skips), candidates=candidates,
            reads=set().union(*(compiled.needs[name] for name in candidates)), now=now, lease=lease,
            durable=durable, worker=session.worker, ending=ending, read_caller=not session.known,
        )
        if chain is not None and durable and any(r.name == link for r in results):
            chain.stored()
        _announce(session.id, applied.rows,
                  [r.name for r in results] + list(skips) + sorted(applied.claimed) + list(applied.skipped))
        if applied.finished is not None and ending is not None:
            _ended(session, applied.rows, ending, applied.finished, now)
            return
        if applied.unfinished == 0:
            _end(session, applied.rows)
            return
        if applied.session_status not in SESSION_ACTIVE or not (applied.claimed or applied.skipped):
            return
        if not session.known and applied.caller is not None:
            session = replace(session, input=applied.caller.input, user_id=applied.caller.user_id,
                              end_user_id=applied.caller.end_user_id, known=True)
        records = {name: Record(row.status, row.output, row.error) for name, row in applied.rows.items()}
        results = []
        for name, attempt in sorted(applied.claimed.items()):
            if name == follow:
                continue
            status, _, encoded, error = run_pure(compiled, name, caller_input=session.input, records=records,
                                              user_id=session.user_id)
            if status == FAILED:
                oplog.task_failed(session.id, name, compiled.definition.tasks[name].type, error, attempt)
            results.append(Result(name, attempt, status, encoded, error))
        durable = False
        if follow is not None and chain is not None and (follow in applied.claimed or follow in applied.skipped):
            chain.take()  # this step runs (or has skipped) the next link: its message is not sent
            link = follow
            if follow in applied.claimed:
                try:
                    results.append(_work(session, follow, task_types.get(compiled.definition.tasks[follow].type),
                                         records, applied.claimed[follow]))
                    durable = True
                except RetryLater as later:  # it gave its claim back: its own message retries it
                    chain.hand_over(later.countdown)
            else:
                chain.stored()
        skips = []
        changed = set(applied.claimed) | set(applied.skipped)
        # Only the tasks just claimed are left: their round trip can end the session.
        rows = applied.rows if applied.unfinished == len(applied.claimed) else None


def _next_link(compiled: CompiledVersion, chain: ChainRest, link: str) -> str | None:
    """The chain's next link that this step may run itself after `link`, or None."""
    follow = compiled.follows.get(link)
    if follow is None or chain.peek() != follow or task_timeout(compiled, follow) > chain.remaining():
        return None
    return follow


def _foreseen_end(compiled: CompiledVersion, rows: dict[str, runstore.Row], results, skips) -> runstore.Ending | None:
    """The session's outcome once `results` and `skips` are stored, if then no task is left."""
    records = {name: Record(row.status, row.output, row.error) for name, row in rows.items()}
    for result in results:
        records[result.name] = Record(result.status, json.loads(result.output) if result.output else None,
                                      result.error)
    for name in skips:
        records[name] = Record(SKIPPED)
    if any(name not in records or records[name].status in runstore.UNFINISHED for name in compiled.definition.tasks):
        return None
    outcome = session_outcome(compiled.definition, records)
    return runstore.Ending(
        status=outcome.status, result=outcome.result, error=_unhandled(outcome, records),
        expect={**{r.name: r.status for r in results}, **dict.fromkeys(skips, SKIPPED)},
    )


def _unhandled(outcome, records: dict[str, Record]) -> str | None:
    if not outcome.unhandled:
        return None
    return "unhandled failure in " + ", ".join(f"{name}: {records[name].error}" for name in outcome.unhandled)


def _task_data(row: runstore.Row) -> dict[str, Any]:
    return selectors.task_data(status=row.status, output=row.output, error=row.error, attempts=row.attempts,
                               started_at=row.started_at, finished_at=row.finished_at, logs=row.logs,
                               worker=row.worker)


def _announce(session_id, rows: dict[str, runstore.Row], names: list[str]) -> None:
    """Publish the new records of `names` to the session's event stream (one round trip)."""
    events.publish_task_changes(session_id, {name: _task_data(rows[name]) for name in names if name in rows})


# --- ending a session -------------------------------------------------------------------------

def count_end(*, session_id, interaction_id, created_at: datetime, status: str, error: str | None = None,
              now: datetime | None = None) -> None:
    """Count and log a session's end (metrics and the operator's log line), wherever it ended."""
    seconds = ((now or timezone.now()) - created_at).total_seconds()
    metrics.session_finished(status, seconds=seconds, interaction=interaction_id)
    oplog.session_finished(session_id, status, seconds * 1000, interaction_id=interaction_id, error=error)


def _end(session: _Session, rows: dict[str, runstore.Row]) -> str | None:
    """End the session from its terminal records; publish the end. Returns the status set."""
    compiled = session.compiled
    records = {name: Record(row.status, row.output, row.error) for name, row in rows.items()}
    outcome = session_outcome(compiled.definition, records)
    ending = runstore.Ending(status=outcome.status, result=outcome.result, error=_unhandled(outcome, records),
                             expect={})
    now = timezone.now()
    finished = runstore.finish(session_id=session.id, status=ending.status, result=ending.result,
                               error=ending.error, now=now)
    if finished is None:
        return None  # ended meanwhile (cancelled, timed out, or by a concurrent step)
    _ended(session, rows, ending, finished, now)
    return outcome.status


def _ended(session: _Session, rows: dict[str, runstore.Row], ending: runstore.Ending, finished: runstore.Finished,
           now: datetime) -> None:
    """Publish the end of a session that this process just recorded (its waiting callers are
    woken first), then count and log it."""
    data = selectors.session_data_from(
        id=session.id, interaction_id=finished.interaction_id, end_user_id=finished.end_user_id,
        version=finished.version, status=ending.status,
        input=finished.input, result=ending.result, error=ending.error, created_at=finished.created_at,
        started_at=finished.started_at, finished_at=now,
        tasks={name: _task_data(rows[name]) for name in session.compiled.definition.tasks if name in rows},
    )
    from interactions.sessions import announce_end

    announce_end(session_id=session.id, status=ending.status, data=data)
    count_end(session_id=session.id, interaction_id=finished.interaction_id, created_at=finished.created_at,
              status=ending.status, error=ending.error, now=now)


def session_finish(*, session_id: UUID | str) -> str:
    """End a session whose tasks have all ended (the sweeper's finishing task).

    Raises RetryLater while a task has not ended; does nothing when the session already
    ended (cancelled, timed out). Returns the status.
    """
    session = Session.objects.only("id", "status", "version_id", "input", "user_id").filter(pk=session_id).first()
    if session is None:
        return "deleted"  # deleted with its interaction: nothing to finish
    if session.status in Session.TERMINAL:
        return session.status
    compiled = compiled_version(session.version_id)
    rows = {
        run["name"]: runstore.Row(run["status"], run["output"], run["error"], run["attempts"], run["started_at"],
                                  run["finished_at"], run["lease_expires_at"], run["logs"], run["worker"])
        for run in session.task_runs.values("name", "status", "output", "error", "attempts", "started_at",
                                            "finished_at", "lease_expires_at", "logs", "worker")
    }
    if any(row.status in TASK_UNFINISHED for row in rows.values()):
        # A task is still being retried or taken over (or a resumed session's other canvas
        # runs): look again later. The session's deadline and the sweeper bound this.
        raise RetryLater(0.5)
    status = _end(_Session(session.id, compiled, session.input, session.user_id, call_worker()), rows)
    if status is None:
        return Session.objects.values_list("status", flat=True).get(pk=session_id)
    return status


def fused_resume(*, session_id, compiled: CompiledVersion, caller_input: Any, user_id, now: datetime,
                 worker: str | None = None) -> None:
    """Run the fused tasks of a resumed session that are ready but were never run (on `worker`).

    A worker that died between recording a task and running the fused tasks it made ready
    leaves them pending (or claimed, with a lease that runs out): nothing else would run them,
    since fused tasks have no message of their own. Called by the sweeper before it sends the
    unfinished steps again.
    """
    from interactions.models import TaskRun

    expired = TaskRun.objects.filter(
        session_id=session_id, name__in=list(compiled.fused), status=RUNNING, lease_expires_at__lte=now,
    )
    poison = [
        Result(name, attempts, FAILED, error=(
            f"the worker running this task was lost {attempts} times; giving up (a task that kills its worker?)"))
        for name, attempts in expired.filter(attempts__gte=settings.JUNCTION_MAX_WORKER_LOSSES)
        .values_list("name", "attempts")
    ]
    expired.filter(attempts__lt=settings.JUNCTION_MAX_WORKER_LOSSES).update(
        status=PENDING, lease_expires_at=None, updated_at=now)
    pending = set(TaskRun.objects.filter(
        session_id=session_id, name__in=list(compiled.fused), status=PENDING,
    ).values_list("name", flat=True))
    parents = {pred for name in pending for pred in compiled.definition.tasks[name].execute_after}
    if parents or poison:
        advance(_Session(session_id, compiled, caller_input, user_id, worker or call_worker()), results=poison,
                candidates_of=parents | {result.name for result in poison})
