"""The task-run state machine, deterministically: the real database, frozen time, no worker.

Each test drives `runstore` (the statements a delivery sends) and `claims.decide` (what the
delivery makes of them) with explicit clocks, as concurrent deliveries would interleave.
Sessions are started through the service inside the test transaction, so nothing is sent.
"""
from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from interactions import executor, runstore
from interactions.claims import PREDECESSOR_RETRY, Verdict, decide
from interactions.compiled import compiled_version
from interactions.models import Session, TaskRun
from interactions.runstore import Result
from interactions.sessions import session_end, session_start
from tests.conftest import make_interaction

pytestmark = pytest.mark.django_db
MAX_LOSSES = 3
LEASE = timedelta(seconds=40)
CALL = {"type": "http_request", "body": {"method": "GET", "url": "http://127.0.0.1:9/"}}
TASKS = {
    "fetch": CALL,
    "notify": {**CALL, "execute_after": {"fetch": ["completed"]}},
    "shape": {"type": "transform", "body": {"data": {"$ref": "fetch.status_code"}, "expression": "@"},
              "execute_after": {"fetch": ["completed"]}},
    "on_error": {"type": "transform", "body": {"data": {"$ref": "fetch.error"}, "expression": "@"},
                 "execute_after": {"fetch": ["failed"]}},
}


@pytest.fixture
def session(user):
    started, _ = session_start(user=user, interaction=make_interaction(user, tasks=TASKS, active=True), data={})
    return started


def attempt(session, name, now, *, timer=False, worker="celery@host-a"):
    """One delivery of task `name` at `now` on `worker`: the claim's statement, then the verdict."""
    compiled = compiled_version(session.version_id)
    lease = now + LEASE
    snapshot = runstore.claim(
        session_id=session.id, name=name, names=sorted(compiled.needs[name] | {name}),
        accepts=compiled.accepts[name], now=now, lease=lease, max_losses=MAX_LOSSES, timer=timer, worker=worker,
    )
    return decide(snapshot, name=name, accepts=compiled.definition.tasks[name].execute_after, lease=lease,
                  now=now, max_losses=MAX_LOSSES, timer=timer)


def record(session, name, attempt_no, now, status="completed", output='{"status_code":200}', candidates=(),
           worker="celery@host-a"):
    compiled = compiled_version(session.version_id)
    return runstore.apply(
        session_id=session.id, results=[Result(name, attempt_no, status, output if status == "completed" else None,
                                               None if status == "completed" else "boom")],
        candidates={c: compiled.accepts[c] for c in candidates}, now=now, lease=now + LEASE, worker=worker,
    )


def row(session, name) -> TaskRun:
    return TaskRun.objects.get(session=session, name=name)


def test_the_first_delivery_claims_and_marks_the_session_running(session):
    t0 = timezone.now()
    decision = attempt(session, "fetch", t0)
    assert decision.verdict is Verdict.RUN and decision.attempt == 1
    fetch = row(session, "fetch")
    assert (fetch.status, fetch.attempts, fetch.started_at, fetch.lease_expires_at) == ("running", 1, t0, t0 + LEASE)
    session.refresh_from_db()
    assert session.status == "running" and session.started_at == t0


def test_a_second_delivery_waits_while_the_lease_holds(session):
    t0 = timezone.now()
    attempt(session, "fetch", t0)
    decision = attempt(session, "fetch", t0 + timedelta(seconds=10))
    assert decision.verdict is Verdict.WAIT
    assert decision.countdown == pytest.approx((LEASE - timedelta(seconds=10)).total_seconds() + 0.5)
    assert row(session, "fetch").attempts == 1


def test_a_delivery_after_the_lease_ran_out_takes_the_task_over(session):
    t0 = timezone.now()
    attempt(session, "fetch", t0)
    later = t0 + LEASE + timedelta(seconds=1)
    decision = attempt(session, "fetch", later)
    assert decision.verdict is Verdict.RUN and decision.attempt == 2
    assert row(session, "fetch").lease_expires_at == later + LEASE
    # The first claimant's late result no longer counts: its claim is gone.
    record(session, "fetch", 1, later + timedelta(seconds=2), output='{"late":true}')
    assert row(session, "fetch").status == "running"
    record(session, "fetch", 2, later + timedelta(seconds=3))
    assert row(session, "fetch").output == {"status_code": 200}


def test_the_claim_names_its_worker_and_a_take_over_names_the_new_one(session):
    t0 = timezone.now()
    assert row(session, "fetch").worker == ""  # pending: it ran nowhere yet
    attempt(session, "fetch", t0, worker="celery@host-b")
    assert row(session, "fetch").worker == "celery@host-b"
    # A second delivery elsewhere while the lease holds changes nothing.
    attempt(session, "fetch", t0 + timedelta(seconds=1), worker="celery@host-a")
    assert row(session, "fetch").worker == "celery@host-b"
    # host-b was lost: the delivery that takes the task over is its worker from now on.
    later = t0 + LEASE + timedelta(seconds=1)
    attempt(session, "fetch", later, worker="celery@host-a")
    record(session, "fetch", 1, later, output='{"late":true}', worker="celery@host-b")  # host-b's late result
    fetch = row(session, "fetch")
    assert (fetch.status, fetch.worker) == ("running", "celery@host-a")
    record(session, "fetch", 2, later + timedelta(seconds=1), worker="celery@host-a")
    fetch = row(session, "fetch")
    assert (fetch.status, fetch.attempts, fetch.worker) == ("completed", 2, "celery@host-a")


def test_a_worker_name_longer_than_the_column_is_cut(session):
    attempt(session, "fetch", timezone.now(), worker="celery@" + "h" * 300)
    assert row(session, "fetch").worker == ("celery@" + "h" * 300)[:255]


def test_a_task_that_keeps_losing_its_worker_is_poison(session):
    now = timezone.now()
    for expected in range(1, MAX_LOSSES + 1):
        decision = attempt(session, "fetch", now)
        assert decision.verdict is Verdict.RUN and decision.attempt == expected
        now += LEASE + timedelta(seconds=1)  # the worker died: the lease runs out
    decision = attempt(session, "fetch", now)
    assert decision.verdict is Verdict.POISON and decision.attempt == MAX_LOSSES


def test_a_poison_task_fails_and_its_session_ends_without_the_sweeper(session):
    now = timezone.now()
    for _ in range(MAX_LOSSES):
        attempt(session, "fetch", now)
        now += LEASE + timedelta(seconds=1)
    executor.task_execute(session_id=session.id, name="fetch", version_id=session.version_id, now=now)
    fetch = row(session, "fetch")
    assert fetch.status == "failed" and "lost 3 times" in fetch.error
    # The step went on as after any failure: the fused tasks it decided ran or were skipped,
    # and the next message of the canvas (notify's) skips notify and ends the session.
    assert row(session, "on_error").status == "completed" and row(session, "shape").status == "skipped"
    executor.task_execute(session_id=session.id, name="notify", version_id=session.version_id, now=now)
    session.refresh_from_db()
    assert session.status == "completed"
    assert row(session, "on_error").status == "completed"
    assert {row(session, n).status for n in ("notify", "shape")} == {"skipped"}


def test_a_delivery_of_an_ended_task_is_a_duplicate(session):
    t0 = timezone.now()
    attempt(session, "fetch", t0)
    record(session, "fetch", 1, t0)
    assert attempt(session, "fetch", t0 + timedelta(seconds=1)).verdict is Verdict.DUPLICATE
    assert row(session, "fetch").attempts == 1


def test_a_task_waits_for_a_predecessor_that_has_not_ended(session):
    decision = attempt(session, "notify", timezone.now())
    assert decision.verdict is Verdict.WAIT and decision.countdown == PREDECESSOR_RETRY
    assert row(session, "notify").status == "pending" and row(session, "notify").attempts == 0


def test_a_task_whose_edge_cannot_be_satisfied_is_skipped_not_claimed(session):
    t0 = timezone.now()
    attempt(session, "fetch", t0)
    record(session, "fetch", 1, t0, status="failed")
    assert attempt(session, "notify", t0).verdict is Verdict.SKIP
    assert row(session, "notify").attempts == 0


def test_a_cancel_that_comes_before_the_record_wins(session):
    t0 = timezone.now()
    attempt(session, "fetch", t0)
    session_end(session=Session.objects.get(pk=session.pk), status="cancelled", error="cancelled by the user",
                now=t0 + timedelta(seconds=1))
    applied = record(session, "fetch", 1, t0 + timedelta(seconds=2))
    assert applied.session_status == "cancelled"
    fetch = row(session, "fetch")
    assert fetch.status == "cancelled" and fetch.output is None
    # The tasks that had not started were cancelled with the session: their deliveries do nothing.
    assert attempt(session, "notify", t0 + timedelta(seconds=3)).verdict is Verdict.DUPLICATE
    assert row(session, "notify").status == "cancelled" and row(session, "notify").attempts == 0


def test_a_retry_gives_the_claim_back_and_the_next_delivery_claims_it_again(session):
    t0 = timezone.now()
    attempt(session, "fetch", t0)
    assert runstore.give_back(session_id=session.id, name="fetch", attempt=1, error="503", now=t0)
    fetch = row(session, "fetch")
    assert (fetch.status, fetch.attempts, fetch.lease_expires_at) == ("pending", 1, None)
    decision = attempt(session, "fetch", t0 + timedelta(seconds=1))
    assert decision.verdict is Verdict.RUN and decision.attempt == 2
    # A give-back by a claim that no longer holds the task changes nothing.
    assert not runstore.give_back(session_id=session.id, name="fetch", attempt=1, error="late", now=t0)


def test_recording_claims_the_fused_tasks_it_made_ready_and_skips_the_others(session):
    t0 = timezone.now()
    attempt(session, "fetch", t0)
    applied = record(session, "fetch", 1, t0, candidates=("shape", "on_error"), worker="celery@host-c")
    assert applied.claimed == {"shape": 1}
    assert applied.skipped == ("on_error",)
    # The fused task runs in the step that claimed it: on the worker that recorded fetch.
    assert (row(session, "shape").status, row(session, "shape").worker) == ("running", "celery@host-c")
    assert applied.rows["shape"].worker == "celery@host-c"
    assert row(session, "on_error").status == "skipped" and row(session, "on_error").attempts == 0
    assert row(session, "on_error").worker == ""
    assert applied.unfinished == 2  # notify (a worker step) and shape
    assert applied.rows["fetch"].output == {"status_code": 200}


def test_a_result_past_the_session_size_limit_is_stored_as_failed(session, settings):
    settings.JUNCTION_MAX_SESSION_BYTES = Session.objects.get(pk=session.pk).size_bytes + 10
    t0 = timezone.now()
    attempt(session, "fetch", t0)
    record(session, "fetch", 1, t0, output='{"body":"' + "x" * 50 + '"}')
    fetch = row(session, "fetch")
    assert fetch.status == "failed" and fetch.output is None
    assert fetch.error.startswith("session too large")


def test_only_a_stored_result_grows_the_session(session):
    """A record whose claim no longer holds (a second delivery, a cancel, a take-over) stores
    nothing, and so adds nothing to the session's size: it stays its input plus its outputs."""
    t0 = timezone.now()
    before = Session.objects.get(pk=session.pk).size_bytes
    attempt(session, "fetch", t0)
    record(session, "fetch", 1, t0)
    grown = Session.objects.get(pk=session.pk).size_bytes
    assert grown == before + len('{"status_code":200}')
    record(session, "fetch", 1, t0 + timedelta(seconds=1))  # delivered again: already recorded
    record(session, "fetch", 2, t0 + timedelta(seconds=2))  # a claim it never had
    assert Session.objects.get(pk=session.pk).size_bytes == grown


def test_a_timer_recorded_twice_grows_its_session_once(user):
    interaction = make_interaction(user, active=True, tasks={"a": {"type": "delay", "body": {"seconds": 0}}})
    session, _ = session_start(user=user, interaction=interaction, data={})
    for _ in range(3):  # the call's delivery, and the sweeper's resumed one, and one more
        executor.task_execute(session_id=session.id, name="a", version_id=session.version_id, due=time.time())
    session.refresh_from_db()
    assert session.status == "completed"
    assert session.size_bytes == len("{}") + len("{}")  # its input, and the delay's output once


def test_a_timer_keeps_its_claim_and_ends_when_due(user):
    interaction = make_interaction(user, active=True, tasks={
        "wait": {"type": "delay", "body": {"seconds": 5}},
        "after": {"type": "transform", "body": {"data": 1, "expression": "@"}, "execute_after": {"wait": ["completed"]}},
    })
    session, _ = session_start(user=user, interaction=interaction, data={})
    # The call claimed it (its message is sent with a countdown): the wait started then.
    wait = row(session, "wait")
    assert (wait.status, wait.attempts, wait.worker) == ("running", 1, executor.call_worker())
    t0 = wait.started_at
    with pytest.raises(executor.RetryLater) as later:  # a delivery that comes early
        executor.task_execute(session_id=session.id, name="wait", version_id=session.version_id, now=t0)
    assert later.value.countdown == pytest.approx(5)
    assert row(session, "wait").status == "running"
    # An early or duplicate delivery neither restarts nor ends it.
    with pytest.raises(executor.RetryLater) as later:
        executor.task_execute(session_id=session.id, name="wait", version_id=session.version_id,
                              now=t0 + timedelta(seconds=2))
    assert later.value.countdown == pytest.approx(3)
    assert row(session, "wait").attempts == 1
    # Due: it completes, its fused dependant runs in the same step, and the session ends.
    executor.task_execute(session_id=session.id, name="wait", version_id=session.version_id,
                          now=t0 + timedelta(seconds=5), worker="celery@host-c")
    session.refresh_from_db()
    assert session.status == "completed" and session.result == {"after": 1}
    assert row(session, "wait").output == {} and row(session, "after").status == "completed"
    # The worker that ended the wait is named, and the fused dependant ran there too.
    assert row(session, "wait").worker == row(session, "after").worker == "celery@host-c"
    with pytest.raises(executor.Duplicate):  # a late copy of the message fires nothing
        executor.task_execute(session_id=session.id, name="wait", version_id=session.version_id,
                              now=t0 + timedelta(seconds=6))


# Two delays that can start at once, joined by a transform.
DELAYS_AND_JOIN = {
    "a": {"type": "delay", "body": {"seconds": 0}},
    "b": {"type": "delay", "body": {"seconds": 0}},
    "join": {"type": "transform", "body": {"data": {"a": {"$ref": "a"}, "b": {"$ref": "b"}}, "expression": "[a, b]"},
             "execute_after": {"a": ["completed"], "b": ["completed"]}},
}


def test_a_worker_step_costs_two_statements_and_the_last_one_ends_the_session(user):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    interaction = make_interaction(user, active=True, tasks=DELAYS_AND_JOIN)
    session, _ = session_start(user=user, interaction=interaction, data={})
    compiled_version(session.version_id)  # compiled once per process, not per step
    with CaptureQueriesContext(connection) as first:
        executor.task_execute(session_id=session.id, name="a", version_id=session.version_id,
                              worker="celery@host-a")
    assert len(first.captured_queries) == 2  # claim, record (the worker's name costs no statement)
    with CaptureQueriesContext(connection) as last:
        executor.task_execute(session_id=session.id, name="b", version_id=session.version_id,
                              worker="celery@host-b")
    # claim; record b and claim join; record join and, in the same round trip, end the session.
    assert len(last.captured_queries) == 3
    session.refresh_from_db()
    assert session.status == "completed" and session.result == {"join": [{}, {}]}
    assert {run.name: run.worker for run in session.task_runs.all()} == {
        "a": "celery@host-a", "b": "celery@host-b", "join": "celery@host-b"}


def _statements(queries) -> list[str]:
    return [q["sql"] for q in queries.captured_queries if "SAVEPOINT" not in q["sql"]]


def test_the_last_worker_task_ends_the_session_in_its_own_round_trip(user):
    """A claim that sees every other task ended reads them all: the record ends the session."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    interaction = make_interaction(user, active=True, tasks={
        "a": {"type": "delay", "body": {"seconds": 0}},
        "b": {"type": "delay", "body": {"seconds": 0}, "execute_after": {"a": ["completed"]}},
    })
    session, _ = session_start(user=user, interaction=interaction, data={})
    compiled_version(session.version_id)
    executor.task_execute(session_id=session.id, name="a", version_id=session.version_id)
    with CaptureQueriesContext(connection) as last:
        executor.task_execute(session_id=session.id, name="b", version_id=session.version_id)
    assert len(_statements(last)) == 2  # claim; record b and end the session
    session.refresh_from_db()
    assert session.status == "completed" and session.finished_at is not None
    assert session.result == {"b": {}}


def test_an_end_foreseen_wrongly_is_not_written_and_the_session_still_ends(user, settings):
    """The folded end holds only if every record was stored as foreseen: an output the session
    has no room for is stored as failed instead, and the session then ends apart, as failed."""
    interaction = make_interaction(user, active=True, tasks={
        "a": {"type": "delay", "body": {"seconds": 0}},
        "big": {"type": "transform", "body": {"data": "x" * 40, "expression": "[@, @, @, @, @, @, @, @, @, @]"},
                "execute_after": {"a": ["completed"]}},
    })
    session, _ = session_start(user=user, interaction=interaction, data={})
    session.refresh_from_db()
    settings.JUNCTION_MAX_SESSION_BYTES = session.size_bytes + 200  # `{}` of a fits, big's 430 bytes do not
    executor.task_execute(session_id=session.id, name="a", version_id=session.version_id)
    session.refresh_from_db()
    runs = {run.name: run for run in session.task_runs.all()}
    assert runs["a"].status == "completed", (runs["a"].error, session.size_bytes)
    assert runs["big"].status == "failed" and "too large" in runs["big"].error
    assert session.status == "failed" and "big" in session.error


def test_a_timer_the_call_claimed_costs_one_round_trip_when_due(user):
    """The call claims two parallel delays and sends them with their due time: each delivery
    only records its timer (no claim); the second one's records also claim and end the join."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    interaction = make_interaction(user, active=True, tasks=DELAYS_AND_JOIN)
    session, _ = session_start(user=user, interaction=interaction, data={})
    assert {run.name: run.status for run in session.task_runs.all()}["a"] == "running"  # claimed by the call
    compiled_version(session.version_id)
    due = time.time() - 0.001
    with CaptureQueriesContext(connection) as first:
        executor.task_execute(session_id=session.id, name="a", version_id=session.version_id, due=due,
                              worker="celery@host-a")
    assert len(_statements(first)) == 1  # record a
    with CaptureQueriesContext(connection) as last:
        executor.task_execute(session_id=session.id, name="b", version_id=session.version_id, due=due,
                              worker="celery@host-b")
    assert len(_statements(last)) == 2  # record b and claim join (reading the input); record join and end
    session.refresh_from_db()
    assert session.status == "completed" and session.result == {"join": [{}, {}]}
    runs = {run.name: run for run in session.task_runs.all()}
    assert runs["a"].worker == "celery@host-a" and runs["join"].worker == "celery@host-b"
    assert all(run.attempts == 1 for run in runs.values())


def test_a_timer_delivered_early_waits_and_one_delivered_twice_records_once(user):
    interaction = make_interaction(user, active=True, tasks={"a": {"type": "delay", "body": {"seconds": 5}}})
    session, _ = session_start(user=user, interaction=interaction, data={})
    with pytest.raises(executor.RetryLater) as early:
        executor.task_execute(session_id=session.id, name="a", version_id=session.version_id, due=time.time() + 5)
    assert 4 < early.value.countdown <= 5
    executor.task_execute(session_id=session.id, name="a", version_id=session.version_id, due=time.time())
    executor.task_execute(session_id=session.id, name="a", version_id=session.version_id, due=time.time())
    session.refresh_from_db()
    run = session.task_runs.get()
    assert session.status == "completed" and run.status == "completed" and run.attempts == 1


def test_a_timer_longer_than_its_timeout_ends_failed_when_due(user):
    interaction = make_interaction(user, active=True, tasks={
        "a": {"type": "delay", "body": {"seconds": 30}, "timeout": 1}})
    session, _ = session_start(user=user, interaction=interaction, data={})
    executor.task_execute(session_id=session.id, name="a", version_id=session.version_id, due=time.time(),
                          timer_error="timed out after 1 s")
    session.refresh_from_db()
    run = session.task_runs.get()
    assert run.status == "failed" and run.error == "timed out after 1 s" and session.status == "failed"


def test_a_timer_of_a_cancelled_session_records_nothing(user):
    from interactions.sessions import session_cancel

    interaction = make_interaction(user, active=True, tasks={"a": {"type": "delay", "body": {"seconds": 0}}})
    session, _ = session_start(user=user, interaction=interaction, data={})
    session_cancel(session=session)
    executor.task_execute(session_id=session.id, name="a", version_id=session.version_id, due=time.time())
    session.refresh_from_db()
    assert session.status == "cancelled" and session.task_runs.get().status == "cancelled"
