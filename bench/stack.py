"""The processes of one benchmark run: Junction's web server and workers, and the raw fleets.

The web server and Junction's workers run the commands of the root `Procfile` (`web:` with
`$PORT` substituted and bound to 127.0.0.1; `worker:` with the pool and concurrency the run
asks for), so the benchmark measures what the README documents. Everything is started in its
own process group and stopped by `Stack.stop()`, also on an error.
"""
from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
DB_NAME = "junction_bench"
PG_URL = "postgres://postgres@127.0.0.1:5432"
# The Redis server of the run (JUNCTION_BENCH_REDIS_URL, e.g. a private one on another port, so
# the server-wide counters see nobody else): db 10 is the broker, db 11 the results.
REDIS_URL = os.environ.get("JUNCTION_BENCH_REDIS_URL", "redis://127.0.0.1:6379").rstrip("/")
BROKER = f"{REDIS_URL}/10"
BACKEND = f"{REDIS_URL}/11"
LOG_DIR = Path(os.environ.get("JUNCTION_BENCH_LOG_DIR", "/tmp/junction-bench"))
QUERYCOUNT_DIR = LOG_DIR / "querycount"
RAW_DELIVERIES = ("default", "junction")
POOLS = ("prefork", "threads", "gevent", "solo")
# Concurrency per worker process when neither --concurrency nor the Procfile gives one:
# prefork as Celery's default on this 2-core machine; I/O pools get enough slots to overlap waits
# (gevent: 16, not more, as each greenlet holds its own PostgreSQL connection; max_connections is 100).
DEFAULT_CONCURRENCY = {"prefork": 2, "solo": 1, "threads": 8, "gevent": 16}

STACK_ENV = {
    "DJANGO_SETTINGS_MODULE": "bench.settings",
    "DATABASE_URL": f"{PG_URL}/{DB_NAME}",
    "CELERY_BROKER_URL": BROKER,
    "CELERY_RESULT_BACKEND": BACKEND,
    "RAWBENCH_BROKER_URL": BROKER,
    "RAWBENCH_RESULT_BACKEND": BACKEND,
    # Fixed, non-secret values for a throwaway benchmark database (as in config/test_settings.py).
    "SECRET_KEY": "bench-secret-key-not-for-production-0123456789abcdef",
    "JUNCTION_ENCRYPTION_KEYS": "0P4nyNaqEcm4t1pfhUKMy5RGbE1PrKvkR3T2hE8Op8I=",
    "JUNCTION_CODE_SANDBOX": "off",
    # The I/O scenarios call the benchmark's own server on 127.0.0.1.
    "JUNCTION_SSRF_ALLOWED_NETWORKS": "127.0.0.0/8",
    # One benchmark user stands for the crowd's many callers: its per-user cap on queued and
    # running sessions (default 1,000, about the crowd's peak) must not turn a slow answer into a 429.
    "JUNCTION_MAX_ACTIVE_SESSIONS": "1000000",
    "DEBUG": "false",
    "ALLOWED_HOSTS": "127.0.0.1,localhost",
    "LOG_LEVEL": "WARNING",
    "JUNCTION_BENCH_QUERYCOUNT_DIR": str(QUERYCOUNT_DIR),
}


@dataclass(frozen=True)
class WorkerFleet:
    """How each side's worker processes run: `processes` × `celery worker -P pool -c concurrency`."""
    processes: int
    pool: str
    concurrency: int


def procfile_commands(path: Path = ROOT / "Procfile") -> dict[str, str]:
    commands = {}
    for line in path.read_text().splitlines():
        name, sep, command = line.partition(":")
        if sep and name.strip() and not name.lstrip().startswith("#"):
            commands[name.strip()] = command.strip()
    return commands


_VARIABLE = re.compile(r"\$(?:\{(\w+)(?::?-([^}]*))?\}|(\w+))")


def expand(command: str, env: dict[str, str]) -> str:
    """Expand `$VAR`, `${VAR}` and `${VAR:-default}` as the shell running a Procfile would."""
    def value(match: re.Match) -> str:
        name = match.group(1) or match.group(3)
        return env.get(name) or (match.group(2) or "")
    return _VARIABLE.sub(value, command)


def _executable(argv: list[str]) -> list[str]:
    """The first word from the project's virtualenv when it is installed there."""
    local = VENV_BIN / argv[0]
    return [str(local), *argv[1:]] if local.exists() else argv


def web_command(override: str | None = None) -> str:
    """The web server's command: `override` (bench.run --web) or the Procfile's `web:`."""
    return override or procfile_commands()["web"]


def web_argv(command: str, port: int, env: dict[str, str]) -> list[str]:
    """`command` on `port` (`$PORT`), bound to 127.0.0.1 instead of every address."""
    command = expand(command, {**env, "PORT": str(port)})
    return _executable([word.replace("0.0.0.0", "127.0.0.1") for word in shlex.split(command)])


def _option(argv: list[str], short: str, long: str) -> str | None:
    for i, word in enumerate(argv):
        if word in (short, long) and i + 1 < len(argv):
            return argv[i + 1]
        if word.startswith(long + "="):
            return word.split("=", 1)[1]
        if word.startswith(short) and len(word) > len(short) and not word.startswith("--"):
            return word[len(short):]
    return None


def _without_options(argv: list[str], *options: tuple[str, str]) -> list[str]:
    out, skip = [], False
    for word in argv:
        if skip:
            skip = False
            continue
        if any(word in pair for pair in options):
            skip = True
            continue
        if any(word.startswith(long + "=") or (word.startswith(short) and len(word) > len(short)
                                                 and not word.startswith("--")) for short, long in options):
            continue
        out.append(word)
    return out


POOL_OPTION, CONCURRENCY_OPTION, LOGLEVEL_OPTION = ("-P", "--pool"), ("-c", "--concurrency"), ("-l", "--loglevel")


def worker_fleet(processes: int, pool: str | None, concurrency: int | None) -> WorkerFleet:
    """The fleet the run asks for, falling back to the Procfile's `worker:` pool and concurrency."""
    argv = shlex.split(expand(procfile_commands()["worker"], dict(os.environ)))
    documented_pool = _option(argv, *POOL_OPTION) or "prefork"
    pool = pool or documented_pool
    given = _option(argv, *CONCURRENCY_OPTION) if pool == documented_pool else None
    return WorkerFleet(processes, pool, concurrency or (int(given) if given else DEFAULT_CONCURRENCY[pool]))


def junction_worker_argv(fleet: WorkerFleet, index: int, env: dict[str, str]) -> list[str]:
    argv = shlex.split(expand(procfile_commands()["worker"], env))
    argv = _without_options(argv, POOL_OPTION, CONCURRENCY_OPTION)
    return _executable([*argv, "-P", fleet.pool, "-c", str(fleet.concurrency), "-n", f"benchj{index}@%h",
                        "--without-mingle", "--without-gossip"])


def celery_default_fleet(processes: int) -> WorkerFleet:
    """Raw Celery as a user who picks it gets it: the prefork pool, one process per CPU."""
    return WorkerFleet(processes, "prefork", os.cpu_count() or 2)


def raw_worker_argv(fleet: WorkerFleet, delivery: str, index: int) -> list[str]:
    """A raw worker of `fleet`'s pool and concurrency, with Junction's log level."""
    loglevel = _option(shlex.split(expand(procfile_commands()["worker"], dict(os.environ))), *LOGLEVEL_OPTION)
    loglevel = loglevel or "WARNING"
    return _executable(["celery", "-A", f"bench.rawtasks:{delivery}_app", "worker", "-P", fleet.pool,
                        "-c", str(fleet.concurrency), "-Q", f"rawbench-{delivery}",
                        "-n", f"benchr{delivery[0]}{index}@%h", "--loglevel", loglevel,
                        "--without-mingle", "--without-gossip"])


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def prepare_services(env: dict[str, str]) -> None:
    """Recreate the benchmark database, flush the benchmark's Redis dbs, migrate."""
    import psycopg2

    conn = psycopg2.connect(f"{PG_URL}/postgres")
    conn.autocommit = True
    with conn.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
        cursor.execute(f"CREATE DATABASE {DB_NAME}")
    conn.close()
    flush_redis()
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
                   cwd=ROOT, env=env, check=True, timeout=300)


def vacuum() -> None:
    """`VACUUM ANALYZE` the benchmark database: what autovacuum does on a default server.

    This machine's PostgreSQL runs with `autovacuum = off`; without vacuuming, every session
    ever run leaves dead row versions and index entries that later calls step over (the
    active-session limit's count, the session row's updates), so a scenario measured after
    thousands of sessions would pay for the earlier scenarios' garbage.
    """
    import psycopg2

    conn = psycopg2.connect(f"{PG_URL}/{DB_NAME}")
    conn.autocommit = True
    try:
        with conn.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE")
    finally:
        conn.close()


def flush_redis() -> None:
    import redis

    for url in (BROKER, BACKEND):
        redis.Redis.from_url(url).flushdb()


def stack_env(extra: dict[str, str], *, querycount: bool) -> dict[str, str]:
    env = {**os.environ, **STACK_ENV, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    extra = dict(extra)
    if "DJANGO_SETTINGS_MODULE" in extra:  # another settings module to try: keep the probes on top
        env["JUNCTION_BENCH_BASE_SETTINGS"] = extra.pop("DJANGO_SETTINGS_MODULE")
    env.update(extra)
    env["JUNCTION_BENCH_QUERYCOUNT"] = "1" if querycount else "0"
    return env


class Stack:
    """The processes this run started; `stop()` ends every one of them (process groups)."""

    def __init__(self, fleet: WorkerFleet, env: dict[str, str], web: str, *, raw: bool = True,
                 raw_default: WorkerFleet | None = None):
        self.fleet = fleet
        # The raw fleet with Celery's default settings: Celery's default pool and concurrency
        # (bench.run), or Junction's pool (a `--pools` row compares like with like).
        self.raw_fleets = {"default": raw_default or fleet, "junction": fleet}
        self.raw = raw  # also start the raw Celery fleets (bench.scaling measures Junction alone)
        self.web = web
        self.env = env
        self.procs: dict[str, subprocess.Popen] = {}
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"

    def _spawn(self, name: str, argv: list[str], role: str) -> None:
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        log = open(LOG_DIR / f"{name}.log", "wb")
        self.procs[name] = subprocess.Popen(argv, cwd=ROOT, env={**self.env, "JUNCTION_BENCH_ROLE": role},
                                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def start(self) -> None:
        QUERYCOUNT_DIR.mkdir(parents=True, exist_ok=True)
        for old in QUERYCOUNT_DIR.glob("*.json"):
            old.unlink()
        self._spawn("web", web_argv(self.web, self.port, self.env), "web")
        for i in range(self.fleet.processes):
            self._spawn(f"junction-worker-{i}", junction_worker_argv(self.fleet, i, self.env), "worker")
            for delivery in RAW_DELIVERIES if self.raw else ():
                self._spawn(f"raw-{delivery}-worker-{i}", raw_worker_argv(self.raw_fleets[delivery], delivery, i),
                            "raw")
        self._wait_http()
        self._wait_workers()

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}; see {LOG_DIR / (name + '.log')}: "
                                   + self.log_tail(name))

    def log_tail(self, name: str, lines: int = 3) -> str:
        try:
            text = (LOG_DIR / f"{name}.log").read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(text[-lines:])[-400:]

    def _wait_http(self, timeout: float = 60) -> None:
        import requests

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                if requests.get(f"{self.base_url}/readyz", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"web server not ready within {timeout} s")

    def _wait_workers(self, timeout: float = 60) -> None:
        from bench.rawtasks import default_app

        expected = {f"benchj{i}" for i in range(self.fleet.processes)}
        if self.raw:
            expected |= {f"benchr{d[0]}{i}" for d in RAW_DELIVERIES for i in range(self.fleet.processes)}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            replies = default_app.control.ping(timeout=1.0) or []
            names = {name.split("@")[0] for reply in replies for name in reply}
            if expected <= names:
                return
        raise RuntimeError(f"workers did not answer within {timeout} s; logs in {LOG_DIR}")

    def pids(self, *prefixes: str) -> list[int]:
        return [p.pid for name, p in self.procs.items() if name.startswith(prefixes) and p.poll() is None]

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for proc in self.procs.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(timeout=10)
        self.procs.clear()
