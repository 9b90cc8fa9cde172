"""Junction soak test: many sessions for a few minutes while workers are killed and Redis restarts.

    . .venv/bin/activate
    python -m bench.chaos                  # 3 minutes of load and faults, then drain and check
    python -m bench.chaos --minutes 2 --json /tmp/chaos.json

Not part of the test run. What it does, all on 127.0.0.1:
1. Recreates the PostgreSQL database `junction_chaos`, flushes Redis dbs 4 (broker) and 5
   (results), migrates, and creates a user and the interactions below through the services.
2. Starts N `celery -A config worker` (--pool: the Procfile's `worker:` pool by default, threads;
   or prefork) and `celery -A config beat` (the sweeper every
   JUNCTION_SWEEP_INTERVAL), with short timeouts so that recovery happens within the run.
3. For --minutes, starts sessions (`session_start`, as the run endpoint does) at --rate per
   second, keeping at most --max-active unfinished, while a fault injector picks at random:
   SIGKILL a pool process (prefork only: a threads worker has none), SIGKILL a whole worker
   (process group) and start a replacement, or
   restart Redis without persistence (every queued message lost; bounded by --redis-restarts).
   Like `restart: unless-stopped` in docker-compose, a worker that exits on its own is
   restarted (counted as `workers_exited_on_their_own`).
4. Stops the faults and the load, waits for every session to end (at most --drain-minutes),
   and checks from PostgreSQL:
   - every session is terminal (else it is *lost*);
   - *duplicates*: no task started before one of its predecessors finished (a successor fired
     twice or early), no session's recorded size differs from its input plus its outputs (a
     result recorded twice), no (session, task) with two records;
   - every task's attempts are within retries + JUNCTION_MAX_WORKER_LOSSES.
5. Prints the figures (and writes them as JSON with --json), stops everything it started, and
   makes sure Redis is running again. Exit status 1 when a session was lost or duplicated.

The Redis on port 6379 is restarted: other users of it see short outages. To keep them out of it,
give the soak a Redis and a PostgreSQL of its own: JUNCTION_CHAOS_REDIS_PORT (a port where this
soak may start and restart redis-server) and JUNCTION_CHAOS_DATABASE_URL.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DB_NAME = "junction_chaos"
REDIS_PORT = int(os.environ.get("JUNCTION_CHAOS_REDIS_PORT", "6379"))
SETTINGS = {
    "DJANGO_SETTINGS_MODULE": "config.settings",
    "DATABASE_URL": os.environ.get("JUNCTION_CHAOS_DATABASE_URL", f"postgres://postgres@127.0.0.1:5432/{DB_NAME}"),
    "CELERY_BROKER_URL": f"redis://127.0.0.1:{REDIS_PORT}/4",
    "CELERY_RESULT_BACKEND": f"redis://127.0.0.1:{REDIS_PORT}/5",
    "SECRET_KEY": "chaos-secret-key-not-for-production-0123456789abcdef",
    "JUNCTION_ENCRYPTION_KEYS": "0P4nyNaqEcm4t1pfhUKMy5RGbE1PrKvkR3T2hE8Op8I=",
    "LOG_LEVEL": "WARNING",
    # Short recovery times, so that every fault is recovered from within the run.
    "JUNCTION_DEFAULT_TASK_TIMEOUT": "10",
    "JUNCTION_MAX_TASK_TIMEOUT": "10",
    "JUNCTION_HARD_TIMEOUT_GRACE": "2",
    "JUNCTION_LEASE_GRACE": "2",
    "CELERY_VISIBILITY_TIMEOUT": "15",
    "CELERY_UNACKED_RESTORE_INTERVAL": "2",
    "JUNCTION_STALL_SECONDS": "10",
    "JUNCTION_SWEEP_INTERVAL": "3",
    "JUNCTION_MAX_RESUMES": "5",
    "JUNCTION_MAX_WORKER_LOSSES": "3",
    # The I/O sessions call the soak's own HTTP server on 127.0.0.1.
    "JUNCTION_SSRF_ALLOWED_NETWORKS": "127.0.0.0/8",
}

INTERACTIONS = {
    "diamond": {
        "a": {"type": "transform", "body": {"data": {"x": 5}, "expression": "x"}},
        "b": {"type": "transform", "body": {"data": {"$ref": "a"}, "expression": "[@, `2`]"},
              "execute_after": {"a": ["completed"]}},
        "c": {"type": "transform", "body": {"data": {"$ref": "a"}, "expression": "[@, `1`]"},
              "execute_after": {"a": ["completed"]}},
        "d": {"type": "transform", "body": {"data": {"b": {"$ref": "b"}, "c": {"$ref": "c"}},
                                            "expression": "sum([sum(b), sum(c)])"},
              "execute_after": {"b": ["completed"], "c": ["completed"]}},
    },
    "delays": {
        "first": {"type": "delay", "body": {"seconds": 2}},
        "second": {"type": "delay", "body": {"seconds": 1}, "execute_after": {"first": ["completed"]}},
        "side": {"type": "transform", "body": {"data": {"$ref": "first"}, "expression": "`1`"},
                 "execute_after": {"first": ["completed"]}},
        "join": {"type": "transform", "body": {"data": {"s": {"$ref": "side"}}, "expression": "s"},
                 "execute_after": {"second": ["completed"], "side": ["completed"]}},
    },
    "fan_out": {
        "root": {"type": "transform", "body": {"data": [1, 2, 3], "expression": "@"}},
        **{f"leg{i}": {"type": "delay", "body": {"seconds": 0.5}, "execute_after": {"root": ["completed"]}}
           for i in range(5)},
        "join": {"type": "transform", "body": {"data": {"$ref": "root"}, "expression": "length(@)"},
                 "execute_after": {f"leg{i}": ["completed"] for i in range(5)}},
    },
    "handled_failure": {
        "boom": {"type": "fail", "body": {"message": "expected"}},
        "ok": {"type": "transform", "body": {"data": 1, "expression": "@"}, "execute_after": {"boom": ["completed"]}},
        "handler": {"type": "response", "body": {"status_code": 502, "body": {"error": {"$ref": "boom.error"}}},
                    "execute_after": {"boom": ["failed"]}},
    },
    "chain": {
        f"t{i}": {"type": "transform", "body": {"data": i, "expression": "@"},
                  **({"execute_after": {f"t{i - 1}": ["completed"]}} if i else {})}
        for i in range(6)
    },
}


def io_interactions(echo_url: str) -> dict[str, dict]:
    """Sessions whose tasks need a worker: a chain of HTTP requests (whose links a step runs one
    after the other: docs/execution.md, "Chains run in one step") and a diamond of them. Each
    request takes 50-300 ms, so that the faults hit tasks while they run; a 3 s timeout keeps the
    links within the step's time (JUNCTION_CHAIN_STEP_SECONDS is JUNCTION_MAX_TASK_TIMEOUT here)."""
    def fetch(sleep_ms: int, after: str | None = None) -> dict:
        n = {"$ref": f"{after}.body.n"} if after else 0
        return {"type": "http_request", "timeout": 3,
                "body": {"method": "GET", "url": echo_url, "query": {"n": n, "sleep_ms": sleep_ms}},
                **({"execute_after": {after: ["completed"]}} if after else {})}

    return {
        "io_chain": {f"h{i}": fetch(50 + 50 * (i % 6), f"h{i - 1}" if i else None) for i in range(6)},
        "io_diamond": {
            "a": fetch(200), "b": fetch(100),
            "c": {"type": "transform", "body": {"data": {"a": {"$ref": "a.body.n"}, "b": {"$ref": "b.body.n"}},
                                                "expression": "sum([a, b])"},
                  "execute_after": {"a": ["completed"], "b": ["completed"]}},
        },
    }


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# --- services ------------------------------------------------------------------------------

def redis_ping() -> bool:
    import redis

    try:
        return redis.Redis(port=REDIS_PORT, socket_connect_timeout=0.5).ping()
    except redis.RedisError:
        return False


def redis_start() -> None:
    if not redis_ping():
        subprocess.run(["redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "--port", str(REDIS_PORT),
                        "--save", "", "--appendonly", "no"], check=True, timeout=10, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not redis_ping():
        if time.monotonic() > deadline:
            raise RuntimeError("Redis did not come back")
        time.sleep(0.1)


def redis_restart(outage: float) -> None:
    subprocess.run(["redis-cli", "-p", str(REDIS_PORT), "shutdown", "nosave"], timeout=10,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(outage)
    finally:
        redis_start()


def recreate_database() -> None:
    from urllib.parse import urlsplit

    url = urlsplit(SETTINGS["DATABASE_URL"])
    name = url.path.lstrip("/")
    for statement in (f"DROP DATABASE IF EXISTS {name} WITH (FORCE)", f"CREATE DATABASE {name}"):
        subprocess.run(["psql", "-h", url.hostname or "127.0.0.1", "-p", str(url.port or 5432),
                        "-U", url.username or "postgres", "-d", "postgres", "-q", "-c", statement], check=True,
                       stdout=subprocess.DEVNULL)


class Stack:
    """The worker and beat processes, each in its own process group."""

    def __init__(self, workers: int, concurrency: int, log_dir: Path, pool: str = "prefork") -> None:
        self.concurrency, self.log_dir, self.pool = concurrency, log_dir, pool
        self.workers: list[subprocess.Popen] = []
        self.born: dict[int, float] = {}
        self.others: list[subprocess.Popen] = []
        self.started = 0
        self.crashes = 0
        self.count = workers
        log_dir.mkdir(parents=True, exist_ok=True)

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        output = open(self.log_dir / f"{name}.log", "ab")
        return subprocess.Popen([sys.executable, "-m", "celery", "-A", "config", *args], cwd=ROOT,
                                env={**os.environ, **SETTINGS}, stdout=output, stderr=subprocess.STDOUT,
                                start_new_session=True)

    def start_worker(self) -> None:
        self.started += 1
        self.workers.append(self._spawn(f"worker-{self.started}", [
            "worker", "-P", self.pool, "-c", str(self.concurrency), "-Q", "default,code",
            "-n", f"chaos{self.started}@%h", "--without-mingle", "--without-gossip", "--loglevel", "WARNING",
        ]))
        self.born[self.workers[-1].pid] = time.monotonic()

    def supervise(self) -> None:
        """Restart workers that exited on their own, as `restart: unless-stopped` does in compose.

        Celery 5.7 workers sometimes exit when the Redis connection drops (an AttributeError while
        closing the lost connection); a production deployment runs them under a supervisor too.
        """
        for worker in [w for w in self.workers if w.poll() is not None]:
            self.workers.remove(worker)
            self.crashes += 1
            log(f"worker pid {worker.pid} exited ({worker.returncode}): restarting it")
            self.start_worker()

    def start(self) -> None:
        for _ in range(self.count):
            self.start_worker()
        schedule = self.log_dir / "beat-schedule"
        self.others.append(self._spawn("beat", ["beat", "--loglevel", "WARNING", "-s", str(schedule)]))

    def kill_pool_process(self, rng: random.Random) -> bool:
        # A pool process killed while its worker is still starting makes the worker give up
        # ("Could not start worker processes"): that is a start-up failure, not the fault tested.
        settled = [w for w in self.workers if w.poll() is None and time.monotonic() - self.born[w.pid] > 15]
        children = [pid for worker in settled for pid in _children(worker.pid)]
        if not children:
            return False
        os.kill(rng.choice(children), signal.SIGKILL)
        return True

    def kill_worker(self, rng: random.Random) -> bool:
        alive = [worker for worker in self.workers if worker.poll() is None]
        if not alive:
            return False
        doomed = rng.choice(alive)
        os.killpg(doomed.pid, signal.SIGKILL)
        doomed.wait(timeout=10)
        self.workers.remove(doomed)
        self.start_worker()
        return True

    def stop(self) -> None:
        processes = [p for p in self.workers + self.others if p.poll() is None]
        for process in processes:
            os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


# --- the run -------------------------------------------------------------------------------

def setup_django():
    os.environ.update(SETTINGS)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    import logging

    # An enqueue during a Redis outage is expected here (the sweeper sends it later): keep quiet.
    logging.getLogger("interactions.sessions").setLevel(logging.CRITICAL)
    logging.getLogger("celery").setLevel(logging.ERROR)


def create_fixtures(echo_url: str):
    from django.core.management import call_command

    from accounts.models import User
    from interactions.services import interaction_create, interaction_set_active

    call_command("migrate", interactive=False, verbosity=0)
    user = User.objects.create_user(username="chaos", email="chaos@example.com", password="not-used-chaos-1")
    interactions = []
    for name, tasks in {**INTERACTIONS, **io_interactions(echo_url)}.items():
        interaction = interaction_create(user=user, name=name, tasks=tasks)
        interactions.append(interaction_set_active(interaction=interaction, active=True))
    return user, interactions


def check(sessions_ids) -> dict:
    """The figures that must hold, read from PostgreSQL."""
    from django.conf import settings

    from interactions.compiled import compiled_version
    from interactions.models import Session, TaskRun

    sessions = list(Session.objects.filter(pk__in=sessions_ids).select_related("version"))
    lost = [str(s.pk) for s in sessions if s.status not in Session.TERMINAL]
    statuses = Counter(s.status for s in sessions)
    early_starts, size_mismatches, over_cap, reexecuted, double_records = 0, 0, 0, 0, 0
    links, links_in_step = 0, 0  # chain links, and those run by the step of the link before
    runs_by_session: dict = {}
    for run in TaskRun.objects.filter(session_id__in=sessions_ids):
        runs_by_session.setdefault(run.session_id, []).append(run)
    failures = Counter()
    for session in sessions:
        runs = runs_by_session.get(session.pk, [])
        names = Counter(run.name for run in runs)
        double_records += sum(count - 1 for count in names.values())
        by_name = {run.name: run for run in runs}
        compiled = compiled_version(session.version.id, session.version.tasks)
        definition = compiled.definition
        for first, then in compiled.follows.items():
            if by_name.get(then) and by_name[then].status == "completed":
                links += 1
                links_in_step += by_name[then].started_at == by_name[first].finished_at
        for run in runs:
            spec = definition.tasks[run.name]
            if run.attempts > spec.retries + settings.JUNCTION_MAX_WORKER_LOSSES:
                over_cap += 1
            if run.attempts > 1:
                reexecuted += 1
            if run.started_at and run.status in ("completed", "failed"):
                for pred in spec.execute_after:
                    finished = by_name[pred].finished_at
                    if finished is None or finished > run.started_at:
                        early_starts += 1
        outputs = sum(len(json.dumps(r.output, separators=(",", ":"))) for r in runs if r.output is not None)
        if session.size_bytes != len(json.dumps(session.input, separators=(",", ":"))) + outputs:
            size_mismatches += 1
        if session.status != "completed":
            failures[(session.error or "")[:80]] += 1
    return {
        "sessions": len(sessions),
        "statuses": dict(statuses),
        "sessions_lost": len(lost),
        "lost_ids": lost[:10],
        "duplicates": early_starts + size_mismatches + double_records,
        "duplicate_detail": {"successor_started_early": early_starts, "size_mismatch": size_mismatches,
                             "double_records": double_records},
        "attempts_over_cap": over_cap,
        "tasks_reexecuted": reexecuted,
        "sessions_resumed": sum(1 for s in sessions if s.resumes),
        "chain_links_completed": links,
        "chain_links_run_in_the_step_before": links_in_step,
        "not_completed_reasons": dict(failures),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=3)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--pool", choices=("prefork", "threads"), default=None,
                        help="the workers' pool (default: the Procfile's `worker:` pool)")
    parser.add_argument("--concurrency", type=int, default=None,
                        help="per worker (default: the Procfile's for its pool, else 2 for prefork)")
    parser.add_argument("--rate", type=float, default=2.0, help="sessions started per second")
    parser.add_argument("--max-active", type=int, default=30, help="unfinished sessions at most")
    parser.add_argument("--fault-every", type=float, default=8.0, help="mean seconds between faults")
    parser.add_argument("--redis-restarts", type=int, default=3, help="at most this many")
    parser.add_argument("--worker-kills", type=int, default=40, help="at most this many kills of both kinds")
    parser.add_argument("--drain-minutes", type=float, default=5)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if args.pool is None or args.concurrency is None:
        from bench.stack import worker_fleet

        documented = worker_fleet(args.workers, args.pool, None)
        args.pool = args.pool or documented.pool
        args.concurrency = args.concurrency or documented.concurrency  # prefork: 2, as before
    seed = args.seed if args.seed is not None else int(time.time())
    rng = random.Random(seed)

    recreate_database()
    setup_django()
    import redis

    for db in (4, 5):
        redis.Redis(port=REDIS_PORT, db=db).flushdb()
    from bench import httpserver
    from bench.stack import free_port

    echo_port = free_port()
    echo = httpserver.start(echo_port, 1, Path("/tmp/junction-chaos"))
    user, interactions = create_fixtures(f"http://127.0.0.1:{echo_port}/echo")

    from interactions.models import Session
    from interactions.sessions import session_start

    stack = Stack(args.workers, args.concurrency, Path("/tmp/junction-chaos"), pool=args.pool)
    faults: Counter = Counter()
    started_ids: list = []
    try:
        stack.start()
        log(f"stack started: {args.workers} workers -P {args.pool} -c {args.concurrency}, beat; seed {seed}; logs in {stack.log_dir}")
        time.sleep(5)
        end = time.monotonic() + args.minutes * 60
        next_fault = time.monotonic() + rng.expovariate(1 / args.fault_every)
        next_session = time.monotonic()
        last_redis = 0.0
        while time.monotonic() < end:
            stack.supervise()
            now = time.monotonic()
            if now >= next_session:
                next_session = now + 1 / args.rate
                active = Session.objects.filter(pk__in=started_ids[-args.max_active * 3:],
                                                status__in=["queued", "running"]).count()
                if active < args.max_active:
                    session, _ = session_start(user=user, interaction=rng.choice(interactions), data={})
                    started_ids.append(session.pk)
            if now >= next_fault:
                next_fault = now + rng.expovariate(1 / args.fault_every)
                kind = rng.choices(["pool_process", "worker", "redis"],
                                   weights=[5 if args.pool == "prefork" else 0, 2, 2])[0]
                kills = faults["pool_process"] + faults["worker"]
                if kind == "redis" and (faults["redis"] >= args.redis_restarts or now - last_redis < 30):
                    kind = "pool_process" if args.pool == "prefork" else "worker"
                if kind != "redis" and kills >= args.worker_kills:
                    continue
                done = {"pool_process": lambda: stack.kill_pool_process(rng),
                        "worker": lambda: stack.kill_worker(rng),
                        "redis": lambda: (redis_restart(rng.uniform(0.5, 2.0)), True)[1]}[kind]()
                if done:
                    faults[kind] += 1
                    if kind == "redis":
                        last_redis = time.monotonic()
                    log(f"fault: {kind} ({sum(faults.values())} so far); {len(started_ids)} sessions started")
            time.sleep(0.05)
        load_ended = time.monotonic()
        log(f"load ended: {len(started_ids)} sessions, faults {dict(faults)}; draining")
        drain_deadline = load_ended + args.drain_minutes * 60
        while time.monotonic() < drain_deadline:
            remaining = Session.objects.filter(pk__in=started_ids, status__in=["queued", "running"]).count()
            if not remaining:
                break
            stack.supervise()
            time.sleep(1)
        drain_seconds = time.monotonic() - load_ended
        figures = check(started_ids)
    finally:
        stack.stop()
        for proc in echo:
            os.killpg(proc.pid, signal.SIGTERM)
        redis_start()
    figures.update({
        "minutes": args.minutes, "workers": args.workers, "concurrency": args.concurrency, "seed": seed,
        "faults": {"pool_process_killed": faults["pool_process"], "worker_killed": faults["worker"],
                   "redis_restarted": faults["redis"]},
        "drain_seconds": round(drain_seconds, 1),
        "workers_exited_on_their_own": stack.crashes,
    })
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    ok = figures["sessions_lost"] == 0 and figures["duplicates"] == 0 and figures["attempts_over_cap"] == 0
    log("OK" if ok else "FAILED: sessions lost, duplicated or over their attempt cap")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
