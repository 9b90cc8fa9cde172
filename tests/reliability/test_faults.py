"""Fault tests (SPEC §3 "Durability"): real worker processes are killed, Redis and PostgreSQL
are restarted, messages are published twice, and every session still ends with one result.

Each test starts its own workers with short timeouts (`SHORT`, also applied to this process
through the `short` fixture) and stops them in a `finally`; workers of other tests (the
session-wide `celery_workers`) are told to stop consuming meanwhile, so that the kills hit the
process that runs the task. Every wait is bounded.

Redis and PostgreSQL are the machine's shared servers: their restarts are one short outage
each, and both are brought back in a `finally` even when the test fails.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, TypeVar
from urllib.parse import urlsplit

import kombu.pools
import pytest
import redis
from django.conf import settings as django_settings
from django.db import OperationalError, connection

from config.celery import app
from interactions.models import Session, TaskRun
from interactions.services import interaction_create, interaction_set_active
from interactions.sessions import session_start
from interactions.sweeper import sessions_sweep
from interactions.tasks import run_task
from tests.workers import WorkerPool, flush_redis

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
T = TypeVar("T")

# Short timeouts for the workers. A task's lease is its timeout + 1 + 1 s; a message held by a
# worker that died outright comes back after 8 s (> the largest task timeout + the hard grace).
SHORT = {
    "JUNCTION_HARD_TIMEOUT_GRACE": 1,
    "JUNCTION_LEASE_GRACE": 1,
    "JUNCTION_MAX_TASK_TIMEOUT": 6,
    "JUNCTION_DEFAULT_TASK_TIMEOUT": 5,
    "JUNCTION_CHAIN_STEP_SECONDS": 6,
    "JUNCTION_MAX_WORKER_LOSSES": 3,
    "JUNCTION_STALL_SECONDS": 3,
    "CELERY_VISIBILITY_TIMEOUT": 8,
    "CELERY_UNACKED_RESTORE_INTERVAL": 1,
}
WAIT = 60  # the longest any single wait in this file may take, in seconds
# The servers these tests restart: the broker's Redis and the test database's cluster (by
# default the machine's; JUNCTION_FAULT_PG_CLUSTER="15 other" when DATABASE_URL points elsewhere).
REDIS_PORT = urlsplit(django_settings.CELERY_BROKER_URL).port or 6379
PG_CLUSTER = os.environ.get("JUNCTION_FAULT_PG_CLUSTER", "15 main").split()


@pytest.fixture
def short(settings):
    """This process's side of SHORT: task limits it sends, and the sweeper it runs."""
    for name, value in SHORT.items():
        if name.startswith("JUNCTION_"):
            setattr(settings, name, value)
    return settings


# --- helpers --------------------------------------------------------------------------------

def wait_for(predicate: Callable[[], T], what: str, timeout: float = WAIT, interval: float = 0.1) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def _names(replies) -> set[str]:
    return {name for reply in replies or [] for name in reply}


@contextmanager
def workers(count: int = 1, concurrency: int = 1, pool: str = "prefork", **env):
    """Start this test's workers (SHORT settings + `env`); stop them and un-pause others after."""
    others = sorted(name for name in _names(app.control.ping(timeout=0.5)) if not name.startswith("fault"))
    for queue in ("default", "code"):
        if others:
            app.control.cancel_consumer(queue, destination=others, reply=True, timeout=2)
    flush_redis()
    workers_pool = WorkerPool(count=count, concurrency=concurrency, name="fault", pool=pool,
                              extra_env={name: str(value) for name, value in {**SHORT, **env}.items()})
    try:
        for index in range(count):
            workers_pool.start_one(index)
        wait_for(lambda: len([n for n in _names(app.control.ping(timeout=0.5)) if n.startswith("fault")]) >= count,
                 "the workers to answer", timeout=30)
        yield workers_pool
    finally:
        workers_pool.stop()
        for queue in ("default", "code"):
            if others:
                app.control.add_consumer(queue, destination=others, reply=True, timeout=2)


def pool_children(pid: int) -> list[int]:
    """The pids of a worker's pool processes (its direct children)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # "pid (comm) state ppid ...": comm may contain spaces, so split after the ")".
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def kill_pool_process(worker: subprocess.Popen) -> int:
    (child,) = pool_children(worker.pid)  # the workers here run one pool process (-c 1)
    os.kill(child, signal.SIGKILL)
    return child


def make_active(user, tasks: dict, **options):
    interaction = interaction_create(user=user, name=f"faults-{time.monotonic_ns()}", tasks=tasks, **options)
    return interaction_set_active(interaction=interaction, active=True)


def start(user, interaction, data=None) -> Session:
    session, _ = session_start(user=user, interaction=interaction, data=data or {})
    return session


def run_of(session: Session, name: str) -> TaskRun:
    return TaskRun.objects.get(session=session, name=name)


def claimed(session: Session, name: str, attempt: int) -> bool:
    return TaskRun.objects.filter(session=session, name=name, status="running", attempts=attempt).exists()


def ended(session: Session) -> Session | None:
    session.refresh_from_db()
    return session if session.status in Session.TERMINAL else None


def broker_backlog() -> int:
    """Messages still queued or held by a worker (unacked, including countdowns)."""
    client = redis.Redis.from_url(django_settings.CELERY_BROKER_URL)
    queued = sum(client.llen(key) for pattern in ("default*", "code*") for key in client.scan_iter(pattern))
    return queued + client.hlen("unacked")


def assert_consistent(session: Session) -> None:
    """Nothing half-written: every task ended, outputs where completed, the size adds up."""
    session.refresh_from_db()
    assert session.status in Session.TERMINAL
    assert session.finished_at is not None
    runs = list(session.task_runs.all())
    assert all(run.status in TaskRun.TERMINAL for run in runs), [(r.name, r.status) for r in runs]
    for run in runs:
        if run.status == TaskRun.Status.COMPLETED:
            assert run.finished_at is not None and run.started_at is not None
    outputs = sum(len(json.dumps(run.output, separators=(",", ":"))) for run in runs if run.output is not None)
    assert session.size_bytes == len(json.dumps(session.input, separators=(",", ":"))) + outputs


class _Slow(BaseHTTPRequestHandler):
    """Answers `GET /<seconds>[/<padding bytes>]` after sleeping that long: a task that really
    holds its worker process (a `delay` does not: it is a timer)."""

    def log_message(self, format, *args):
        pass

    def do_GET(self):
        seconds, _, padding = self.path.strip("/").partition("/")
        time.sleep(float(seconds))
        body = json.dumps({"slept": True, "pad": "x" * int(padding or 0)}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def slow_url():
    """The base URL of a local server whose answers take as long as their path says."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Slow)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def slow_then_transform(slow_url: str) -> dict:
    return {
        "slow": {"type": "http_request", "body": {"url": f"{slow_url}/3"}, "timeout": 4},
        "after": {"type": "transform", "body": {"data": {"$ref": "slow.status_code"}, "expression": "`1`"},
                  "execute_after": {"slow": ["completed"]}},
    }


def assert_completed_once(session: Session, slow_attempts: int) -> None:
    assert session.status == "completed", session.error
    slow, after = run_of(session, "slow"), run_of(session, "after")
    assert (slow.status, slow.attempts) == ("completed", slow_attempts)
    assert (after.status, after.attempts, after.output) == ("completed", 1, 1)
    assert after.started_at is not None and slow.finished_at is not None
    assert after.started_at >= slow.finished_at
    assert_consistent(session)


# --- worker crashes -------------------------------------------------------------------------

def test_a_killed_pool_process_is_redelivered_and_the_session_completes_once(short, user, slow_url):
    interaction = make_active(user, slow_then_transform(slow_url))
    with workers() as pool:
        session = start(user, interaction)
        wait_for(lambda: claimed(session, "slow", 1), "the first attempt")
        time.sleep(0.5)
        kill_pool_process(pool.processes[0])
        session = wait_for(lambda: ended(session), "the session to end")
        assert_completed_once(session, slow_attempts=2)


@pytest.mark.parametrize("worker_pool", ["prefork", "threads"])
def test_a_killed_worker_is_replaced_and_the_session_completes_once(short, user, slow_url, worker_pool):
    interaction = make_active(user, slow_then_transform(slow_url))
    with workers(pool=worker_pool) as pool:
        session = start(user, interaction)
        wait_for(lambda: claimed(session, "slow", 1), "the first attempt")
        time.sleep(0.5)
        doomed = pool.processes[0]
        os.killpg(doomed.pid, signal.SIGKILL)  # the main process and its pool, no goodbye
        doomed.wait(timeout=10)
        killed_at = time.monotonic()
        pool.start_one(1)
        wait_for(lambda: claimed(session, "slow", 2), "the message to come back")
        # It comes back once the visibility timeout has passed: the new worker looks for
        # abandoned messages every CELERY_UNACKED_RESTORE_INTERVAL (1 s here), plus start-up time.
        assert time.monotonic() - killed_at < SHORT["CELERY_VISIBILITY_TIMEOUT"] + 1 + 4
        session = wait_for(lambda: ended(session), "the session to end")
        assert_completed_once(session, slow_attempts=2)


def test_a_pool_process_killed_in_a_link_run_by_an_earlier_links_step_is_resumed_once(short, user, slow_url):
    # a's step runs b itself (docs/execution.md, "Chains run in one step"). Killed during b, a's
    # message comes back and is a duplicate (a is recorded); b's claim lasts the step's time
    # limit (+ graces), then the sweeper sends b again, whose step runs c.
    interaction = make_active(user, {
        "a": {"type": "http_request", "body": {"url": f"{slow_url}/0"}, "timeout": 1},
        "b": {"type": "http_request", "body": {"url": f"{slow_url}/3"}, "timeout": 4,
              "execute_after": {"a": ["completed"]}},
        "c": {"type": "http_request", "body": {"url": f"{slow_url}/0"}, "timeout": 1,
              "execute_after": {"b": ["completed"]}},
    })
    with workers() as pool:
        session = start(user, interaction)
        wait_for(lambda: claimed(session, "b", 1), "b's first attempt")
        a, b = run_of(session, "a"), run_of(session, "b")
        assert b.started_at == a.finished_at and b.worker == a.worker  # b runs in a's step
        # b's claim outlasts the step's hard time limit (JUNCTION_CHAIN_STEP_SECONDS + grace).
        assert (b.lease_expires_at - b.started_at).total_seconds() >= SHORT["JUNCTION_MAX_TASK_TIMEOUT"] - 1 + 2
        time.sleep(0.5)
        kill_pool_process(pool.processes[0])
        (session,) = sweep_until_ended([session])
        session.refresh_from_db()
        assert session.status == "completed", session.error
        runs = {name: run_of(session, name) for name in "abc"}
        assert [(runs[n].status, runs[n].attempts) for n in "abc"] == [("completed", 1), ("completed", 2),
                                                                        ("completed", 1)]
        assert runs["c"].started_at == runs["b"].finished_at
        assert_consistent(session)
        wait_for(lambda: broker_backlog() == 0, "the queue to drain", timeout=20)


def test_a_task_that_keeps_killing_its_worker_fails_after_the_cap_and_the_queue_drains(short, user, slow_url):
    interaction = make_active(user, {
        "poison": {"type": "http_request", "body": {"url": f"{slow_url}/4"}, "timeout": 4},
        "after": {"type": "transform", "body": {"data": 1, "expression": "@"},
                  "execute_after": {"poison": ["completed"]}},
    })
    with workers(JUNCTION_MAX_WORKER_LOSSES=2) as pool:
        session = start(user, interaction)
        for attempt in (1, 2):  # it "kills its worker" each time it starts
            wait_for(lambda: claimed(session, "poison", attempt), f"attempt {attempt}")
            kill_pool_process(pool.processes[0])
        session = wait_for(lambda: ended(session), "the session to end")
        wait_for(lambda: broker_backlog() == 0, "the queue to drain", timeout=20)
        poison = run_of(session, "poison")
        assert (poison.status, poison.attempts) == ("failed", 2)
        assert poison.error == (
            "the worker running this task was lost 2 times; giving up (a task that kills its worker?)"
        )
        assert run_of(session, "after").status == "skipped"
        assert session.status == "failed"
        assert "poison: the worker running this task was lost 2 times" in session.error


class _DripSmtp:
    """An SMTP server that never finishes its greeting: one byte of it every 0.2 s, no end of
    line. Each read returns well within any socket timeout, so a client's per-operation timeout
    never fires: a task that outlives every limit it sets itself."""

    def __init__(self):
        import socket

        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.stopped = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stopped.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._drip, args=(conn,), daemon=True).start()

    def _drip(self, conn):
        with conn:
            while not self.stopped.wait(0.2):
                try:
                    conn.sendall(b"2")
                except OSError:
                    return

    def stop(self):
        self.stopped.set()
        self.listener.close()


def test_a_threads_worker_restarts_itself_when_a_task_outlives_its_hard_limit(short, user):
    """The threads pool cannot kill a task: past its hard limit (timeout + grace) the worker
    replaces itself (config/hardlimits.py) before the claim's lease runs out, so a take-over never
    overlaps it; the task is taken over by the restarted worker, and after the loss cap the
    session fails, never stuck."""
    from tests.conftest import make_integration

    drip = _DripSmtp()
    try:
        mailer = make_integration(user, "smtp", port=drip.port)
        interaction = make_active(user, {
            "mail": {"type": "send_email", "integration": str(mailer.id), "timeout": 1,
                     "body": {"to": "ops@example.com", "subject": "hello", "text": "hi"}},
        })
        with workers(pool="threads", concurrency=2, JUNCTION_MAX_WORKER_LOSSES=2) as pool:
            worker = pool.processes[0]
            session = start(user, interaction)
            wait_for(lambda: claimed(session, "mail", 1), "the first attempt")
            first = run_of(session, "mail")
            log = pool.log_dir / f"{pool.name}-{os.getpid()}-0.log"
            wait_for(lambda: "past its hard time limit" in log.read_text(errors="replace"), "the restart", timeout=10)
            restarted = time.time()
            # The hard limit is 1 + 1 s; the lease 1 + 1 + 1 s: the restart came first.
            assert restarted < first.lease_expires_at.timestamp(), (restarted, first.lease_expires_at)
            assert worker.poll() is None  # the same process, a fresh program in it
            wait_for(lambda: any(n.startswith("fault") for n in _names(app.control.ping(timeout=0.5))),
                     "the restarted worker to answer", timeout=20)
            # Its message comes back (visibility timeout) to the restarted worker, which takes the
            # task over; that attempt hangs too, and the cap fails the task.
            session = wait_for(lambda: ended(session), "the session to end")
            mail = run_of(session, "mail")
            assert (mail.status, mail.attempts) == ("failed", 2), (mail.status, mail.attempts, mail.error)
            assert "was lost 2 times" in mail.error
            assert session.status == "failed"
            assert log.read_text(errors="replace").count("past its hard time limit") >= 2
            assert worker.poll() is None
    finally:
        drip.stop()


def test_a_cancel_on_a_threads_worker_records_nothing_late_and_the_worker_goes_on(short, user, slow_url):
    """A thread cannot be terminated: the cancelled task runs to its end, its result is refused
    (the session is cancelled), and the worker is unharmed by the revoke it cannot obey."""
    from interactions.sessions import session_cancel

    interaction = make_active(user, slow_then_transform(slow_url))
    with workers(pool="threads", concurrency=2) as pool:
        session = start(user, interaction)
        wait_for(lambda: claimed(session, "slow", 1), "the slow task to start")
        session_cancel(session=session)
        time.sleep(4)  # past the slow task's 3 s answer
        session.refresh_from_db()
        slow, after = run_of(session, "slow"), run_of(session, "after")
        assert session.status == "cancelled"
        assert (slow.status, slow.output) == ("cancelled", None)
        assert (after.status, after.attempts) == ("cancelled", 0)
        assert pool.processes[0].poll() is None
        log = pool.log_dir / f"{pool.name}-{os.getpid()}-0.log"
        assert "kill_job" not in log.read_text(errors="replace")  # the revoke is no error there
        # The same worker runs the next session.
        again = wait_for(lambda: ended(start(user, interaction)) or None, "a first look", timeout=1) \
            if False else start(user, interaction)
        again = wait_for(lambda: ended(again), "the next session to end")
        assert_completed_once(again, slow_attempts=1)


# --- duplicate messages ---------------------------------------------------------------------

@pytest.mark.parametrize("worker_pool", ["prefork", "threads"])
def test_a_task_message_published_twice_records_one_result_and_fires_successors_once(short, user, slow_url,
                                                                                       worker_pool):
    """On threads the copy sent while the task runs is taken by another thread of the same
    process, at the same time: the claim still lets one of them run it."""
    interaction = make_active(user, slow_then_transform(slow_url))
    with workers(concurrency=2, pool=worker_pool):
        session = start(user, interaction)
        message_id = f"{session.id}.slow"
        wait_for(lambda: claimed(session, "slow", 1), "the first attempt")
        run_task.apply_async(args=[str(session.id), "slow"], task_id=message_id)  # while it runs
        session = wait_for(lambda: ended(session), "the session to end")
        finished_at = session.finished_at
        for name in ("slow", "after"):  # and after everything ran
            run_task.apply_async(args=[str(session.id), name], task_id=f"{session.id}.{name}")
        wait_for(lambda: broker_backlog() == 0, "the duplicates to be consumed", timeout=20)
        session.refresh_from_db()
        assert session.finished_at == finished_at
        assert_completed_once(session, slow_attempts=1)


# --- broker and database outages ------------------------------------------------------------

def redis_ping() -> bool:
    try:
        return redis.Redis(port=REDIS_PORT, socket_connect_timeout=0.5).ping()
    except redis.RedisError:
        return False


@contextmanager
def redis_down():
    """Shut the shared Redis down (no persistence: every key is lost); always start it again."""
    subprocess.run(["redis-cli", "-p", str(REDIS_PORT), "shutdown", "nosave"], timeout=10,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: not redis_ping(), "Redis to stop", timeout=10)
        yield
    finally:
        if not redis_ping():
            subprocess.run(["redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "--port", str(REDIS_PORT),
                            "--save", "", "--appendonly", "no"], check=True, timeout=10, stdout=subprocess.DEVNULL)
        wait_for(redis_ping, "Redis to start again", timeout=10)
        # This process's pooled broker connections point at the old server: drop them (what
        # Celery does after a fork), so that the next test's broadcasts get a fresh connection.
        kombu.pools.reset()
        app._after_fork()


def pg_online() -> bool:
    result = subprocess.run(["pg_lsclusters", "--no-header", *PG_CLUSTER], capture_output=True, text=True)
    return " online " in f" {result.stdout} "


def pg_ctl(action: str) -> None:
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", *PG_CLUSTER, action],
                   timeout=60, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def sweep_until_ended(sessions: list[Session], timeout: float = WAIT) -> list[Session]:
    """Run the sweeper every second, as beat would, until every session ended."""
    def all_ended():
        try:
            sessions_sweep()
            return all(ended(session) for session in sessions)
        except OperationalError:  # the database is coming back: reconnect on the next round
            connection.close()
            return False

    wait_for(all_ended, "every session to end", timeout=timeout, interval=1)
    return sessions


def test_every_session_ends_after_a_redis_restart(short, user):
    interaction = make_active(user, {
        "first": {"type": "delay", "body": {"seconds": 2}, "timeout": 4},
        "left": {"type": "delay", "body": {"seconds": 1}, "timeout": 4,
                 "execute_after": {"first": ["completed"]}},
        "right": {"type": "transform", "body": {"data": {"$ref": "first"}, "expression": "`2`"},
                  "execute_after": {"first": ["completed"]}},
        "join": {"type": "transform", "body": {"data": {"l": {"$ref": "left"}, "r": {"$ref": "right"}},
                                               "expression": "r"},
                 "execute_after": {"left": ["completed"], "right": ["completed"]}},
    })
    with workers(count=2, concurrency=2) as pool:
        sessions = [start(user, interaction) for _ in range(6)]
        wait_for(lambda: TaskRun.objects.filter(session__in=sessions, status="running").exists(), "a running task")
        with redis_down():
            time.sleep(1)
        sweep_until_ended(sessions)
        # No supervisor here: the workers that held messages when the connection dropped are
        # still the ones consuming (config/celery.py keeps kombu's failed restore from ending them).
        assert [process.poll() for process in pool.processes] == [None] * len(pool.processes)
    # More sessions than pool processes: some messages were only in Redis, lost with it.
    assert any(session.resumes for session in sessions)
    for session in sessions:
        assert session.status == "completed" or (session.status == "failed" and session.error), session.error
        assert_consistent(session)
    assert TaskRun.objects.filter(session__in=sessions, status__in=["pending", "running"]).count() == 0


@pytest.mark.parametrize("worker_pool", ["prefork", "threads"])
def test_tasks_running_across_a_redis_restart_complete_once_and_their_worker_stays(short, user, slow_url,
                                                                                   worker_pool):
    # The tasks hold their pool processes (threads) while Redis goes away and comes back, then
    # record and are acked late. (An ack through a channel whose connection kombu already released
    # raised AttributeError and ended the worker in the soak: tests/config/test_broker_channel.py.)
    interaction = make_active(user, slow_then_transform(slow_url))
    with workers(concurrency=2, pool=worker_pool) as pool:
        sessions = [start(user, interaction) for _ in range(2)]
        wait_for(lambda: all(claimed(session, "slow", 1) for session in sessions), "the tasks to start")
        with redis_down():
            time.sleep(1.5)  # the tasks (3 s) end, and are acked, once the worker reconnected
        for session in sessions:
            session = wait_for(lambda: ended(session), "the session to end")
            assert_completed_once(session, slow_attempts=1)
        time.sleep(2)  # the acks went out when the tasks returned: the worker is still there after them
        assert pool.processes[0].poll() is None
        wait_for(lambda: any(name.startswith("fault") for name in _names(app.control.ping(timeout=1))),
                 "the worker to answer", timeout=20)


@pytest.mark.parametrize("worker_pool", ["prefork", "threads"])
def test_a_session_ends_without_half_written_state_after_a_postgresql_restart(short, user, slow_url, worker_pool):
    interaction = make_active(user, slow_then_transform(slow_url))
    with workers(concurrency=2, pool=worker_pool):
        session = start(user, interaction)
        wait_for(lambda: claimed(session, "slow", 1), "the first attempt")
        try:
            pg_ctl("restart")  # the slow call is still waiting: its result is recorded after it
        finally:
            if not pg_online():
                pg_ctl("start")
        connection.close()
        sweep_until_ended([session])
    assert session.status == "completed" or (session.status == "failed" and session.error), session.error
    assert_consistent(session)
    slow = run_of(session, "slow")
    assert slow.attempts <= 2


# --- retries, timeouts, deadlines, limits ---------------------------------------------------

class _Flaky(BaseHTTPRequestHandler):
    """Answers 503 to the first `failures` requests, then 200."""

    failures = 2
    seen: list[float] = []

    def log_message(self, format, *args):
        pass

    def do_GET(self):
        self.seen.append(time.monotonic())
        status = 503 if len(self.seen) <= self.failures else 200
        if self.path.startswith("/missing"):
            status = 404
        body = json.dumps({"request": len(self.seen)}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def flaky_server():
    handler = type("Flaky", (_Flaky,), {"seen": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, handler
    server.shutdown()
    server.server_close()


def test_a_transient_failure_is_retried_with_backoff_up_to_retries(short, user, flaky_server):
    server, handler = flaky_server
    interaction = make_active(user, {"call": {
        "type": "http_request", "retries": 3, "timeout": 5,
        "body": {"url": f"http://127.0.0.1:{server.server_address[1]}/flaky"},
    }})
    with workers():
        session = start(user, interaction)
        session = wait_for(lambda: ended(session), "the session to end")
    call = run_of(session, "call")
    assert (session.status, call.status, call.attempts) == ("completed", "completed", 3)
    assert call.output["body"] == {"request": 3}
    assert len(handler.seen) == 3


def test_a_permanent_failure_is_not_retried(short, user, flaky_server):
    server, handler = flaky_server
    interaction = make_active(user, {"call": {
        "type": "http_request", "retries": 3, "timeout": 5,
        "body": {"url": f"http://127.0.0.1:{server.server_address[1]}/missing"},
    }})
    with workers():
        session = start(user, interaction)
        session = wait_for(lambda: ended(session), "the session to end")
    call = run_of(session, "call")
    assert (call.status, call.attempts) == ("failed", 1)
    assert "answered 404" in call.error
    assert len(handler.seen) == 1


def test_a_task_over_its_timeout_fails_as_timed_out(short, user):
    interaction = make_active(user, {"slow": {"type": "delay", "body": {"seconds": 3}, "timeout": 1}})
    with workers():
        session = start(user, interaction)
        session = wait_for(lambda: ended(session), "the session to end")
    slow = run_of(session, "slow")
    assert (slow.status, slow.error, slow.attempts) == ("failed", "timed out after 1 s", 1)
    assert session.status == "failed"


def test_a_session_past_its_deadline_ends_timed_out_by_the_sweeper(short, user):
    interaction = make_active(user, {"slow": {"type": "delay", "body": {"seconds": 3}, "timeout": 5}},
                              deadline_seconds=1)
    with workers():
        session = start(user, interaction)
        wait_for(lambda: claimed(session, "slow", 1), "the task to start")
        sweep_until_ended([session], timeout=10)
        time.sleep(3)  # the delay's own end must not overwrite the verdict
    session.refresh_from_db()
    assert session.status == "timed_out"
    assert session.error.startswith("timed out: the session's deadline")
    assert run_of(session, "slow").status == "cancelled"


def test_an_output_over_the_limit_fails_the_task_with_that_reason(short, user, slow_url):
    # Recorded by a worker …
    interaction = make_active(user, {"call": {"type": "http_request", "body": {"url": f"{slow_url}/0/3000"}}})
    with workers(JUNCTION_MAX_OUTPUT_BYTES=1024):
        session = start(user, interaction)
        session = wait_for(lambda: ended(session), "the session to end")
    call = run_of(session, "call")
    assert (call.status, call.output) == ("failed", None)
    assert call.error == "output too large: more than 1024 bytes"
    assert session.status == "failed"


def test_an_output_over_the_limit_in_a_fused_task_fails_it_the_same_way(short, user):
    # … and by the call itself, for a task that needs no worker.
    short.JUNCTION_MAX_OUTPUT_BYTES = 1024
    interaction = make_active(user, {"big": {"type": "transform", "body": {"data": "x" * 2000, "expression": "@"}}})
    session = start(user, interaction)
    big = run_of(session, "big")
    assert (big.status, big.output) == ("failed", None)
    assert big.error == "output too large: more than 1024 bytes"
    assert session.status == "failed"


def test_a_request_body_over_the_limit_is_413_in_the_error_shape(api, user, settings):
    settings.JUNCTION_MAX_REQUEST_BYTES = 1000
    interaction = make_active(user, {"echo": {"type": "transform", "body": {"data": None, "expression": "@"}}})
    response = api.post(f"/api/interactions/{interaction.id}/run/", {"echo": {"data": "x" * 2000}}, format="json")
    assert response.status_code == 413
    body = response.json()
    assert body["code"] == "request_too_large"
    assert body["details"] == {"body": ["At most 1000 bytes."]}
    assert not Session.objects.filter(interaction=interaction).exists()
