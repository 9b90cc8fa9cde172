"""The web server's CPU per run call: the Procfile's `web:` alone, driven by a few clients.

    .venv/bin/python -m bench.webcost --db junction_dev --broker redis://127.0.0.1:6379/12 \\
        --backend redis://127.0.0.1:6379/13 --clients 4 --seconds 20 [--profile out.txt]

Starts the echo server, one Junction worker (`celery -A config worker -Q default`) and the web
server on the given database (created and migrated if missing) and Redis dbs (flushed), creates
a user, an API key and the I/O diamond through the API (bench/run.py `setup_api`), then drives
`POST …/run/` with `Prefer: wait=30` from closed-loop clients (bench/clients.py) and reports
the web server's CPU (utime + stime of its processes) per call, and calls per second. With
`--profile`, py-spy (`--gil`, raw format) records the web processes meanwhile.

Unlike bench/run.py it touches nothing but the database and Redis dbs it is given, and measures
only the web server: for profiling the request path, not for the published figures.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import httpserver  # noqa: E402
from bench.clients import drive  # noqa: E402
from bench.counters import descendants  # noqa: E402
from bench.run import setup_api  # noqa: E402
from bench.stack import LOG_DIR, PG_URL, STACK_ENV, free_port, web_argv, web_command  # noqa: E402
from bench.workloads import interactions  # noqa: E402


def _prepare(db: str, broker: str, backend: str, env: dict[str, str]) -> None:
    import psycopg2
    import redis

    conn = psycopg2.connect(f"{PG_URL}/postgres")
    conn.autocommit = True
    with conn.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [db])
        if cursor.fetchone() is None:
            cursor.execute(f'CREATE DATABASE "{db}"')
    conn.close()
    for url in (broker, backend):
        redis.Redis.from_url(url).flushdb()
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
                   cwd=ROOT, env=env, check=True, timeout=300)


def _user_system(pids: set[int]) -> tuple[float, float]:
    """User and system CPU seconds of these processes so far."""
    tick = os.sysconf("SC_CLK_TCK")
    user = system = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        user, system = user + int(fields[11]), system + int(fields[12])
    return user / tick, system / tick


def _spawn(name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen:
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    log = open(LOG_DIR / f"webcost-{name}.log", "wb")
    return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _wait_ready(url: str, timeout: float = 60) -> None:
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise RuntimeError("web server not ready")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", required=True)
    parser.add_argument("--broker", required=True)
    parser.add_argument("--backend", required=True)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--rounds", type=int, default=1, help="measure this many times on the same stack")
    parser.add_argument("--scenario", default="io_diamond")
    parser.add_argument("--worker-concurrency", type=int, default=2)
    parser.add_argument("--web", default=None, help="another web command (default: the Procfile's)")
    parser.add_argument("--profile", default=None, help="py-spy raw output of the web processes")
    args = parser.parse_args()

    env = {**os.environ, **STACK_ENV, "DJANGO_SETTINGS_MODULE": "config.settings",
           "DATABASE_URL": f"{PG_URL}/{args.db}", "CELERY_BROKER_URL": args.broker,
           "CELERY_RESULT_BACKEND": args.backend,
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    for name in ("RAWBENCH_BROKER_URL", "RAWBENCH_RESULT_BACKEND", "JUNCTION_BENCH_QUERYCOUNT_DIR"):
        env.pop(name, None)
    _prepare(args.db, args.broker, args.backend, env)

    procs: list[subprocess.Popen] = []
    try:
        echo_port = free_port()
        procs += httpserver.start(echo_port, 1, LOG_DIR)
        echo_url = f"http://127.0.0.1:{echo_port}/echo"
        procs.append(_spawn("worker", [str(Path(sys.executable).parent / "celery"), "-A", "config", "worker",
                                       "-Q", "default", "-c", str(args.worker_concurrency), "--loglevel", "WARNING",
                                       "-n", f"webcost-{os.getpid()}@%h", "--without-mingle", "--without-gossip"],
                            env))
        port = free_port()
        web = _spawn("web", web_argv(web_command(args.web), port, env), env)
        procs.append(web)
        base_url = f"http://127.0.0.1:{port}"
        _wait_ready(base_url)
        definitions = {args.scenario: interactions(echo_url, 0)[args.scenario]}
        key, ids = setup_api(base_url, definitions, f"webcost-{uuid.uuid4().hex[:8]}")
        spec = {"side": "junction", "scenario": args.scenario, "base_url": base_url, "api_key": key,
                "interaction": ids[args.scenario], "input": definitions[args.scenario][1], "keep_times": False}
        web_pids = descendants([web.pid])
        for round_ in range(args.rounds):
            profiler = None
            if args.profile and round_ == args.rounds - 1:
                profiler = subprocess.Popen(
                    [str(Path(sys.executable).parent / "py-spy"), "record", "--gil", "-r", "300", "-p", str(web.pid),
                     "--subprocesses", "--nonblocking", "-f", "raw", "-o", args.profile,
                     "-d", str(int(args.seconds + 25))],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            result = drive(spec, args.clients, args.seconds, 1_000_000, web_pids, warmup=5)
            user, system = _user_system(web_pids)
            latencies = sorted(result["latencies"])
            p50 = latencies[len(latencies) // 2] * 1000 if latencies else float("nan")
            print(f"round {round_ + 1}: {result['count']} calls in {result['elapsed']:.1f} s = "
                  f"{result['count'] / result['elapsed']:.1f}/s, p50 {p50:.1f} ms, errors {result['error_count']} "
                  f"{result['errors'][:1]}; web CPU {result['server_cpu_ms']:.2f} ms per call "
                  f"(since start: user {user:.1f} s, system {system:.1f} s)", flush=True)
            if profiler is not None:
                profiler.send_signal(signal.SIGINT)
                profiler.wait(timeout=60)
    finally:
        for proc in procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


if __name__ == "__main__":
    main()
