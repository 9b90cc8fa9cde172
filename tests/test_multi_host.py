"""Workers on other hosts (issue 12; docs/multi-host.md): a fleet of Linux network namespaces.

The `fleet` fixture builds, with `tests/netns.py`, five "hosts" on one switch — `db`
(10.231.0.10: its own PostgreSQL cluster from initdb, its own Redis, and a slow HTTP service),
`web` (.20: the API, the Procfile's `web`, and beat) and `host-a`, `host-b`, `host-c` (.31–.33:
one Procfile `worker` each, threads × 2, named `celery@host-a` …) — and this process talks to
them from a thread inside `web`. Nothing is reachable from the machine's own network, and
nothing of the machine's PostgreSQL or Redis is used.

What it shows:
- the parallel branches of one session run on different hosts, and the `worker` column of the
  API says which: each HTTP call of a branch arrives at the service from the address of the
  host the API names;
- a host unplugged from the switch while it runs tasks loses nothing: its tasks are taken over
  by the other hosts once their leases run out (the broker's visibility timeout gives the
  messages back; the sweeper resumes what stalled), every session completes, each task
  recorded once — and nothing the cut host did after the cut is recorded.

Short leases and timeouts (`FLEET_SETTINGS`) keep the run under two minutes on this machine.
"""
from __future__ import annotations

import json
import os
import pwd
import shlex
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import psycopg2
import pytest
import redis
import requests

from bench.stack import expand, procfile_commands
from tests import netns

pytestmark = pytest.mark.slow
T = TypeVar("T")

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
PG_BIN = Path(os.environ.get("JUNCTION_LAB_PG_BIN", "/usr/lib/postgresql/15/bin"))
PG_PORT, REDIS_PORT, WEB_PORT, SERVICE_PORT = 15432, 16379, 8000, 8080
HOSTS = {"db": 10, "web": 20, "host-a": 31, "host-b": 32, "host-c": 33}
WORKERS = ("host-a", "host-b", "host-c")
WAIT = 120  # the longest any single wait may take, in seconds

# The fleet's recovery settings, short as in the fault tests: a task's lease is its timeout
# + 1 + 1 s; a message held by a lost worker comes back after 10 s (> the largest task timeout
# + the hard grace); a session with no progress and no live lease for 4 s is resumed.
FLEET_SETTINGS = {
    "JUNCTION_HARD_TIMEOUT_GRACE": "1",
    "JUNCTION_LEASE_GRACE": "1",
    "JUNCTION_MAX_TASK_TIMEOUT": "6",
    "JUNCTION_DEFAULT_TASK_TIMEOUT": "5",
    "JUNCTION_STALL_SECONDS": "4",
    "JUNCTION_SWEEP_INTERVAL": "1",
    "JUNCTION_MAX_RESUMES": "10",
    "CELERY_VISIBILITY_TIMEOUT": "10",
    "CELERY_UNACKED_RESTORE_INTERVAL": "1",
}


def _unavailable() -> str | None:
    reason = netns.unavailable()
    if reason:
        return reason
    if not (PG_BIN / "initdb").exists():
        return f"no PostgreSQL server binaries in {PG_BIN} (set JUNCTION_LAB_PG_BIN)"
    if shutil.which("redis-server") is None:
        return "redis-server is not installed"
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return "no `postgres` user to run initdb as"
    return None


def wait_for(predicate: Callable[[], T], what: str, timeout: float = WAIT, interval: float = 0.2) -> T:
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except (OSError, requests.RequestException, psycopg2.Error, redis.RedisError) as exc:
            value, last_error = None, exc
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what} (last error: {last_error})")


# --- a slow service on the `db` host -----------------------------------------------------------

@dataclass
class Call:
    tag: str
    client: str  # the address the call came from: the host that made it
    at: float  # time.time() when it arrived


class _Slow(BaseHTTPRequestHandler):
    """`GET /work?tag=<tag>&seconds=<s>`: sleeps, then answers {"tag": tag}; every call is kept."""

    server: _Service

    def log_message(self, format, *args):
        pass

    def do_GET(self):
        query = parse_qs(urlsplit(self.path).query)
        tag = query["tag"][0]
        with self.server.lock:
            self.server.calls.append(Call(tag, self.client_address[0], time.time()))
        time.sleep(float(query.get("seconds", ["0"])[0]))
        body = json.dumps({"tag": tag}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Service(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address):
        super().__init__(address, _Slow)
        self.calls: list[Call] = []
        self.lock = threading.Lock()

    def handle_error(self, request, client_address):
        pass  # a caller that was cut off mid-call is not the service's error

    def callers(self, tag: str) -> list[str]:
        with self.lock:
            return [call.client for call in self.calls if call.tag == tag]


# --- the fleet ---------------------------------------------------------------------------------

@dataclass
class Fleet:
    lab: netns.Lab
    client: netns.HostThread  # a thread inside `web`: the API's callers and the test's checks
    service: _Service
    token: str = ""
    addresses: dict[str, str] = field(default_factory=dict)  # host -> address

    @property
    def api(self) -> str:
        return f"http://{self.addresses['web']}:{WEB_PORT}"

    @property
    def database(self) -> dict[str, Any]:
        return {"host": self.addresses["db"], "port": PG_PORT, "user": "postgres", "dbname": "junction",
                "connect_timeout": 5}

    def request(self, method: str, path: str, body: Any = None) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return self.client.call(requests.request, method, f"{self.api}{path}", json=body, headers=headers,
                                timeout=30)

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        def run() -> list[tuple]:
            with psycopg2.connect(**self.database) as connection, connection.cursor() as cursor:
                cursor.execute(sql, params)
                rows = cursor.fetchall()
            connection.close()
            return rows
        return self.client.call(run)

    def interaction(self, name: str, tasks: dict) -> str:
        created = self.request("POST", "/api/interactions/", {"name": name, "tasks": tasks})
        assert created.status_code == 201, created.text
        interaction_id = created.json()["id"]
        assert self.request("POST", f"/api/interactions/{interaction_id}/activate/").status_code == 200
        return interaction_id

    def run(self, interaction_id: str, data: dict) -> str:
        response = self.request("POST", f"/api/interactions/{interaction_id}/run/", data)
        assert response.status_code == 202, response.text
        return response.json()["id"]

    def session(self, session_id: str) -> dict:
        response = self.request("GET", f"/api/sessions/{session_id}/")
        assert response.status_code == 200, response.text
        return response.json()

    def ended(self, session_ids: list[str]) -> dict[str, dict] | None:
        found = {sid: self.session(sid) for sid in session_ids}
        terminal = ("completed", "failed", "cancelled", "timed_out")
        return found if all(s["status"] in terminal for s in found.values()) else None


def _fleet_env(tmp: Path, addresses: dict[str, str]) -> dict[str, str]:
    """The environment of every Junction process of the fleet (config.settings, not the tests')."""
    db = addresses["db"]
    return {
        "PATH": f"{VENV_BIN}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": str(tmp), "LANG": "C.UTF-8", "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1",
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": f"postgres://postgres@{db}:{PG_PORT}/junction",
        "CELERY_BROKER_URL": f"redis://{db}:{REDIS_PORT}/0",
        "CELERY_RESULT_BACKEND": f"redis://{db}:{REDIS_PORT}/1",
        # Fixed, non-secret values for a throwaway cluster (as in config/test_settings.py).
        "SECRET_KEY": "fleet-test-secret-key-not-for-production-0123456789",
        "JUNCTION_ENCRYPTION_KEYS": "0P4nyNaqEcm4t1pfhUKMy5RGbE1PrKvkR3T2hE8Op8I=",
        "ALLOWED_HOSTS": addresses["web"],
        # The branches call the slow service on the `db` host: a private address.
        "JUNCTION_SSRF_ALLOWED_NETWORKS": f"{db.rsplit('.', 1)[0]}.0/24",
        "JUNCTION_CODE_SANDBOX": "off",
        "JUNCTION_BEAT_HEARTBEAT_FILE": str(tmp / "beat-heartbeat"),
        "LOG_FORMAT": "text",
        "LOG_LEVEL": "INFO",
        **FLEET_SETTINGS,
    }


def _procfile_argv(name: str, env: dict[str, str], *extra: str) -> list[str]:
    """The Procfile's command `name`, its variables expanded, its program from the virtualenv."""
    argv = shlex.split(expand(procfile_commands()[name], env)) + list(extra)
    local = VENV_BIN / argv[0]
    return [str(local), *argv[1:]] if local.exists() else argv


def _start_database(fleet: Fleet, tmp: Path) -> None:
    """initdb a cluster as `postgres` and start it on the db host's address only, with Redis."""
    lab, db = fleet.lab, fleet.lab.hosts["db"]
    data = tmp / "pgdata"
    postgres = pwd.getpwnam("postgres")
    data.mkdir()
    os.chown(data, postgres.pw_uid, postgres.pw_gid)
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": str(tmp)}
    lab.run(db, [str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "--no-sync"],
            env=env, user="postgres", label="initdb")
    with open(data / "pg_hba.conf", "a") as hba:
        hba.write(f"host all all {db.address.rsplit('.', 1)[0]}.0/24 trust\n")
    lab.spawn(db, [
        str(PG_BIN / "postgres"), "-D", str(data), "-p", str(PG_PORT),
        "-c", f"listen_addresses={db.address}",
        "-c", "unix_socket_directories=",  # no socket file on the machine's filesystem
        "-c", "fsync=off", "-c", "full_page_writes=off",  # a throwaway cluster
        # What docs/multi-host.md recommends: a host lost mid-transaction does not hold its
        # locks for hours (PostgreSQL would otherwise wait for TCP to give up on it).
        "-c", "idle_in_transaction_session_timeout=5s",
        "-c", "tcp_keepalives_idle=2", "-c", "tcp_keepalives_interval=1", "-c", "tcp_keepalives_count=3",
    ], env=env, user="postgres", label="postgres", death_signal=signal.SIGINT)  # SIGINT: a fast shutdown
    lab.spawn(db, ["redis-server", "--bind", db.address, "--port", str(REDIS_PORT), "--save", "",
                   "--appendonly", "no", "--dir", str(tmp), "--protected-mode", "no"],
              env=env, label="redis")

    def create_database() -> bool:
        connection = psycopg2.connect(**{**fleet.database, "dbname": "postgres"})
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute("CREATE DATABASE junction")
        connection.close()
        return True

    wait_for(lambda: fleet.client.call(create_database), "the fleet's PostgreSQL", timeout=60)
    broker = redis.Redis(host=db.address, port=REDIS_PORT, socket_timeout=2)
    wait_for(lambda: fleet.client.call(broker.ping), "the fleet's Redis", timeout=30)


def _start_junction(fleet: Fleet, tmp: Path) -> None:
    """Migrate; start the API and beat on `web` and a worker on each worker host (Procfile)."""
    lab = fleet.lab
    env = _fleet_env(tmp, fleet.addresses)
    web = lab.hosts["web"]
    lab.run(web, [str(VENV_BIN / "python"), "manage.py", "migrate", "--noinput"], env=env, cwd=ROOT,
            label="migrate", timeout=300)
    web_env = {**env, "PORT": str(WEB_PORT), "WEB_CONCURRENCY": "1"}
    lab.spawn(web, _procfile_argv("web", web_env), env=web_env, cwd=ROOT, hostname=True, label="web")
    lab.spawn(web, _procfile_argv("beat", env, "--schedule", str(tmp / "beat-schedule")), env=env, cwd=ROOT,
              hostname=True, label="beat")
    for name in WORKERS:
        # SIGKILL if this process dies: a warm shutdown of the unplugged host's worker would wait
        # for tasks stuck on the network (its pool processes die with it, billiard's pdeathsig).
        lab.spawn(lab.hosts[name], _procfile_argv("worker", env, "--concurrency", "2", "--without-mingle",
                                                  "--without-gossip"),
                  env=env, cwd=ROOT, hostname=True, label=f"worker-{name}", death_signal=signal.SIGKILL)
    wait_for(lambda: fleet.client.call(requests.get, f"{fleet.api}/readyz", timeout=5).status_code == 200,
             "the API to be ready", timeout=90)

    # A worker logs "<node name> ready." once it consumes from the broker on the db host.
    for name in WORKERS:
        wait_for(lambda name=name: f"celery@{name} ready." in lab.tail(f"worker-{name}", lines=200),  # type: ignore[misc]
                 f"celery@{name} to be ready", timeout=90)


@pytest.fixture(scope="module")
def fleet():
    reason = _unavailable()
    if reason:
        pytest.skip(f"no network-namespace fleet: {reason}")
    log_dir = Path(os.environ.get("JUNCTION_TEST_LOG_DIR", "/tmp/junction-test-workers")) / f"fleet-{os.getpid()}"
    sys.stderr.write(f"fleet logs: {log_dir}\n")  # shown with a failure's captured setup output
    lab = netns.Lab(log_dir=log_dir)
    tmp = lab.workdir
    try:
        for name, number in HOSTS.items():
            lab.add_host(name, number)
        addresses = {name: host.address for name, host in lab.hosts.items()}
        client = lab.thread(lab.hosts["web"])
        # The service's socket is made inside `db`; its serving thread needs no namespace.
        service = lab.thread(lab.hosts["db"]).call(_Service, (addresses["db"], SERVICE_PORT))
        threading.Thread(target=service.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        fleet = Fleet(lab=lab, client=client, service=service, addresses=addresses)
        try:
            _start_database(fleet, tmp)
            _start_junction(fleet, tmp)
            registered = fleet.request("POST", "/api/auth/register/", {
                "username": "fleet", "email": "fleet@example.com", "password": "fleet-pass-phrase-2718"})
            assert registered.status_code == 201, registered.text
            login = fleet.request("POST", "/api/auth/login/", {"username": "fleet",
                                                               "password": "fleet-pass-phrase-2718"})
            fleet.token = login.json()["access"]
            yield fleet
        finally:
            service.shutdown()
            service.server_close()
    finally:
        lab.close()


# --- the sessions ------------------------------------------------------------------------------

def fan_out(fleet: Fleet, branches: int, timeout: float) -> dict:
    """`branches` parallel calls of the slow service (the caller gives each a tag), then a join."""
    url = f"http://{fleet.addresses['db']}:{SERVICE_PORT}/work"
    tasks: dict[str, Any] = {
        f"b{i}": {"type": "http_request", "timeout": timeout,
                  "body": {"url": url, "query": None, "timeout": timeout}}
        for i in range(1, branches + 1)
    }
    tasks["join"] = {
        "type": "transform",
        "body": {"data": {f"b{i}": {"$ref": f"b{i}.body.tag"} for i in range(1, branches + 1)},
                 "expression": "[" + ", ".join(f"b{i}" for i in range(1, branches + 1)) + "]"},
        "execute_after": {f"b{i}": ["completed"] for i in range(1, branches + 1)},
    }
    return tasks


def run_input(run: str, branches: int, seconds: float) -> dict:
    return {f"b{i}": {"query": {"tag": f"{run}-b{i}", "seconds": str(seconds)}} for i in range(1, branches + 1)}


def host_of(fleet: Fleet, address: str) -> str:
    return next(name for name, known in fleet.addresses.items() if known == address)


def assert_recorded_once(fleet: Fleet, session: dict, branches: int, run: str) -> None:
    """Completed; the join read each branch's one result, after all of them; the size adds up."""
    assert session["status"] == "completed", session["error"]
    tasks = session["tasks"]
    assert tasks["join"]["output"] == [f"{run}-b{i}" for i in range(1, branches + 1)]
    assert tasks["join"]["attempts"] == 1
    last_branch = max(datetime.fromisoformat(tasks[f"b{i}"]["finished_at"]) for i in range(1, branches + 1))
    assert datetime.fromisoformat(tasks["join"]["started_at"]) >= last_branch
    ((size, data, outputs, records),) = fleet.query(
        "SELECT s.size_bytes, s.input, json_agg(r.output) FILTER (WHERE r.output IS NOT NULL), count(r.id) "
        "  FROM interactions_session s JOIN interactions_taskrun r ON r.session_id = s.id "
        " WHERE s.id = %s GROUP BY s.id", (session["id"],))
    assert records == branches + 1
    # The session's size is its input plus each recorded output, as compact JSON.
    compact = [len(json.dumps(value, separators=(",", ":"))) for value in [data, *outputs]]
    assert size == sum(compact), "a result was counted twice (or not at all)"


# --- the tests ---------------------------------------------------------------------------------

def test_parallel_branches_run_on_different_hosts_and_the_api_names_them(fleet):
    branches, seconds = 4, 1.0
    interaction = fleet.interaction("spread", fan_out(fleet, branches, timeout=5))
    runs = {f"spread{n}": None for n in range(3)}
    for run in runs:
        runs[run] = fleet.run(interaction, run_input(run, branches, seconds))
    sessions = wait_for(lambda: fleet.ended(list(runs.values())), "the sessions to end", timeout=60)

    hosts_per_session = {}
    for run, session_id in runs.items():
        session = sessions[session_id]
        assert_recorded_once(fleet, session, branches, run)
        workers = {name: task["worker"] for name, task in session["tasks"].items()}
        assert set(workers.values()) <= {f"celery@{name}" for name in WORKERS}, workers
        # The join is fused: it ran in the step that recorded the last branch, on that host.
        # (Which one was last is decided by the session's row lock, not by `finished_at`: that
        # is taken before the round trip, so two branches ending together may show either.)
        assert workers["join"] in {workers[f"b{i}"] for i in range(1, branches + 1)}
        for i in range(1, branches + 1):
            # The column is what the network saw: the branch's call came from that host.
            callers = fleet.service.callers(f"{run}-b{i}")
            assert [f"celery@{host_of(fleet, address)}" for address in callers] == [workers[f"b{i}"]]
        hosts_per_session[run] = {workers[f"b{i}"] for i in range(1, branches + 1)}
    # Four 1 s branches at once, and a host runs at most two (threads × 2, prefetch 1): the
    # first session's branches ran on at least two hosts.
    assert max(len(hosts) for hosts in hosts_per_session.values()) >= 2, hosts_per_session


def test_the_tasks_a_call_runs_itself_name_the_api_host(fleet):
    interaction = fleet.interaction("at-call", {
        "shape": {"type": "transform", "body": {"data": {"n": 2}, "expression": "n"}},
    })
    session = fleet.session(fleet.run(interaction, {}))
    assert session["status"] == "completed"
    # The web process's hostname is its host's: `web`.
    assert session["tasks"]["shape"]["worker"] == "api@web"


def test_a_host_cut_off_mid_run_loses_nothing(fleet):
    branches, seconds, timeout = 4, 2.0, 4
    interaction = fleet.interaction("cut", fan_out(fleet, branches, timeout=timeout))
    runs = {f"cut{n}": None for n in range(4)}
    for run in runs:
        runs[run] = fleet.run(interaction, run_input(run, branches, seconds))
    cut_host, cut_worker = fleet.lab.hosts["host-b"], "celery@host-b"

    def running_on_cut_host() -> set[tuple[str, str]]:
        held = set()
        for run, session_id in runs.items():
            for name, task in fleet.session(session_id)["tasks"].items():
                if task["status"] == "running" and task["worker"] == cut_worker:
                    held.add((run, name))
        return held

    def calling_from_cut_host() -> set[tuple[str, str]]:
        # Running there, and its call has reached the service: the host is mid-task.
        return {(run, name) for run, name in running_on_cut_host()
                if cut_host.address in fleet.service.callers(f"{run}-{name}")}

    mid_call = wait_for(calling_from_cut_host, "host-b to be running a task", timeout=60, interval=0.05)
    fleet.lab.unplug(cut_host)
    cut_at = datetime.now(UTC)
    time.sleep(0.5)  # a record host-b sent just before the cut has landed by now
    held = running_on_cut_host()
    assert held, "host-b finished its tasks before the cut: nothing to take over"

    sessions = wait_for(lambda: fleet.ended(list(runs.values())), "every session to end", timeout=WAIT)
    by_run = {run: sessions[session_id] for run, session_id in runs.items()}
    for run, session in by_run.items():
        assert_recorded_once(fleet, session, branches, run)
    for run, name in held:
        task = by_run[run]["tasks"][name]
        # Taken over by a host still on the network, which ran it again (at least once).
        assert task["status"] == "completed" and task["attempts"] >= 2, task
        assert task["worker"] in {"celery@host-a", "celery@host-c"}, task
        callers = [host_of(fleet, address) for address in fleet.service.callers(f"{run}-{name}")]
        assert f"celery@{callers[-1]}" == task["worker"], callers
        # host-b's own call, if it got out before the cut, came first; none came after.
        assert "host-b" not in callers[1:], callers
        if (run, name) in mid_call:
            assert callers[0] == "host-b", callers
    # Nothing host-b did after the cut was recorded: every record it holds predates the cut.
    for session in by_run.values():
        for name, task in session["tasks"].items():
            if task["worker"] == cut_worker:
                assert datetime.fromisoformat(task["finished_at"]) <= cut_at, (name, task)
    # It was cut off, not stopped: its worker is still running, unreachable.
    worker = next(process for label, process in fleet.lab.processes if label == "worker-host-b")
    assert worker.poll() is None
