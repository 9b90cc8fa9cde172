"""Junction benchmark: the distributed stack against hand-written Celery canvases, same run.

    . .venv/bin/activate
    python -m bench.run            # full run (~4 min), writes docs/benchmarks.md
    python -m bench.run --quick    # ~1 min smoke run

What it does, all on 127.0.0.1:
1. Recreates the PostgreSQL database `junction_bench`, flushes Redis dbs 10 and 11, migrates.
2. Starts `gunicorn config.wsgi` (-w 2 -k gthread --threads 8) on a free port, N Junction
   workers (`celery -A config worker -P prefork -c 2 -Q default,code`) and N raw-Celery workers
   (`celery -A bench.rawtasks worker`, same pool settings, queue `rawbench`).
3. Registers a user, creates an API key, creates and activates the interactions below, all
   through the HTTP API.
4. For each scenario runs the raw canvas and then the Junction interaction (`POST .../run/`
   with `Prefer: wait=30`) with the same client processes (one connection each), bounded in
   count and time, and prints/records the figures and their ratios.
5. Stops everything it started (also on Ctrl-C or an error).

Scenarios: diamond (A ∥ B → C, `transform`), chain of 20 `transform`, fan-out 1 → 50 → 1,
two parallel 1 s `delay` → join. Each client is a separate process (spawned), so the raw
baseline is not held back by one interpreter's GIL and both sides are driven identically.
"""
from __future__ import annotations

import argparse
import gc
import json
import multiprocessing as mp
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DB_NAME = "junction_bench"
PG_URL = "postgres://postgres@127.0.0.1:5432"
BROKER = "redis://127.0.0.1:6379/10"
BACKEND = "redis://127.0.0.1:6379/11"
LOG_DIR = Path(os.environ.get("JUNCTION_BENCH_LOG_DIR", "/tmp/junction-bench"))
DOC = ROOT / "docs" / "benchmarks.md"
RESULTS_START, RESULTS_END = "<!-- bench:results:start -->", "<!-- bench:results:end -->"
WAIT_HEADER = "wait=30"

STACK_ENV = {
    "DJANGO_SETTINGS_MODULE": "config.settings",
    "DATABASE_URL": f"{PG_URL}/{DB_NAME}",
    "CELERY_BROKER_URL": BROKER,
    "CELERY_RESULT_BACKEND": BACKEND,
    "RAWBENCH_BROKER_URL": BROKER,
    "RAWBENCH_RESULT_BACKEND": BACKEND,
    # Fixed, non-secret values for a throwaway benchmark database (as in config/test_settings.py).
    "SECRET_KEY": "bench-secret-key-not-for-production-0123456789abcdef",
    "JUNCTION_ENCRYPTION_KEYS": "0P4nyNaqEcm4t1pfhUKMy5RGbE1PrKvkR3T2hE8Op8I=",
    "JUNCTION_CODE_SANDBOX": "off",
    "DEBUG": "false",
    "ALLOWED_HOSTS": "127.0.0.1,localhost",
    "LOG_LEVEL": "WARNING",
}

# --- the interactions -----------------------------------------------------------------------

def _diamond() -> dict[str, Any]:
    return {
        "a": {"type": "transform", "body": {"data": None, "expression": "x"}},
        "b": {"type": "transform", "body": {"data": {"y": 2}, "expression": "y"}},
        "c": {"type": "transform",
              "body": {"data": {"a": {"$ref": "a"}, "b": {"$ref": "b"}}, "expression": "sum([a, b])"},
              "execute_after": {"a": ["completed"], "b": ["completed"]}},
    }


def _chain(length: int) -> dict[str, Any]:
    tasks: dict[str, Any] = {"t00": {"type": "transform", "body": {"data": 0, "expression": "@"}}}
    for i in range(1, length):
        tasks[f"t{i:02d}"] = {
            "type": "transform",
            "body": {"data": {"$ref": f"t{i - 1:02d}"}, "expression": "sum([@, `1`])"},
            "execute_after": {f"t{i - 1:02d}": ["completed"]},
        }
    return tasks


def _fan_out(width: int) -> dict[str, Any]:
    tasks: dict[str, Any] = {"src": {"type": "transform", "body": {"data": {"n": width}, "expression": "n"}}}
    middle = [f"m{i:02d}" for i in range(width)]
    for name in middle:
        tasks[name] = {"type": "transform", "body": {"data": {"$ref": "src"}, "expression": "@"},
                       "execute_after": {"src": ["completed"]}}
    tasks["sink"] = {"type": "transform",
                     "body": {"data": {m: {"$ref": m} for m in middle}, "expression": "length(values(@))"},
                     "execute_after": {m: ["completed"] for m in middle}}
    return tasks


def _parallel_delay(seconds: float) -> dict[str, Any]:
    return {
        "d1": {"type": "delay", "body": {"seconds": seconds}},
        "d2": {"type": "delay", "body": {"seconds": seconds}},
        "join": {"type": "transform",
                 "body": {"data": {"d1": {"$ref": "d1"}, "d2": {"$ref": "d2"}}, "expression": "keys(@)"},
                 "execute_after": {"d1": ["completed"], "d2": ["completed"]}},
    }


INTERACTIONS: dict[str, tuple[Callable[[], dict], dict]] = {
    # scenario -> (tasks, run input)
    "diamond": (_diamond, {"a": {"data": {"x": 1}}}),
    "chain20": (lambda: _chain(20), {}),
    "fanout50": (lambda: _fan_out(50), {}),
    "delay": (lambda: _parallel_delay(1.0), {}),
}

# --- client processes -----------------------------------------------------------------------


def _parse_ts(value: str | None) -> float | None:
    return datetime.fromisoformat(value).timestamp() if value else None


def _session_times(data: dict[str, Any], sent: float, received: float) -> dict[str, Any]:
    """Wall-clock timestamps (epoch s) of one session as recorded by Junction, plus the client's."""
    return {
        "sent": sent, "received": received,
        "created": _parse_ts(data.get("created_at")),
        "started": _parse_ts(data.get("started_at")),
        "finished": _parse_ts(data.get("finished_at")),
        "tasks": {name: (_parse_ts(t.get("started_at")), _parse_ts(t.get("finished_at")))
                  for name, t in (data.get("tasks") or {}).items()},
    }


def _make_op(spec: dict[str, Any]) -> Callable[[], tuple[bool, Any]]:
    if spec["side"] == "raw":
        from bench import rawtasks

        scenario = spec["scenario"]

        def raw_op():
            rawtasks.run_once(scenario, timeout=60)
            return True, None

        return raw_op

    import requests

    http = requests.Session()
    url = f"{spec['base_url']}/api/interactions/{spec['interaction']}/run/"
    headers = {"Authorization": f"Api-Key {spec['api_key']}", "Prefer": WAIT_HEADER}
    payload = spec["input"]
    keep_times = spec.get("keep_times", False)

    def http_op():
        sent = time.time()
        response = http.post(url, json=payload, headers=headers, timeout=60)
        received = time.time()
        if response.status_code != 200:
            return False, f"HTTP {response.status_code}: {response.text[:200]}"
        data = response.json()
        if data.get("status") != "completed":
            return False, f"session {data.get('id')} {data.get('status')}: {data.get('error')}"
        return True, _session_times(data, sent, received) if keep_times else None

    return http_op


def client_main(spec: dict[str, Any], ready, go, out) -> None:
    """One client: run the op in a loop until `duration` s or `max_count` ops; report latencies."""
    try:
        op = _make_op(spec)
        ready.put(os.getpid())
        if not go.wait(120):
            out.put({"error": "never started"})
            return
        deadline = time.monotonic() + spec["duration"]
        cpu0 = time.process_time()
        latencies, extras, errors = [], [], []
        first = time.time()
        while len(latencies) + len(errors) < spec["max_count"] and time.monotonic() < deadline:
            start = time.perf_counter()
            try:
                ok, extra = op()
            except Exception as exc:  # a timeout or a refused connection is a failed op, not a crash
                ok, extra = False, f"{type(exc).__name__}: {exc}"
            elapsed = time.perf_counter() - start
            if ok:
                latencies.append(elapsed)
                if extra is not None:
                    extras.append(extra)
            else:
                errors.append(extra)
        last = time.time()
        op = None
        gc.collect()  # release Celery results (their __del__ unsubscribes) before shutdown
        out.put({"latencies": latencies, "errors": errors[:5], "error_count": len(errors),
                 "extras": extras, "first": first, "last": last, "cpu": time.process_time() - cpu0})
    except Exception as exc:  # report set-up failures to the parent instead of hanging it
        ready.put(os.getpid())
        out.put({"error": f"{type(exc).__name__}: {exc}"})
    # Skip interpreter teardown: library finalizers (Celery's result consumer) are noisy there.
    out.close()
    out.join_thread()
    os._exit(0)


def proc_cpu(pids: set[int]) -> float:
    """User + system CPU seconds consumed so far by these processes (those still alive)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


def drive(spec: dict[str, Any], clients: int, duration: float, max_count: int,
          server_pids: set[int] = frozenset()) -> dict[str, Any]:
    """Run `clients` client processes at once; return latencies, throughput, CPU and errors."""
    ctx = mp.get_context("spawn")
    ready, out, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    spec = {**spec, "duration": duration, "max_count": max_count}
    procs = [ctx.Process(target=client_main, args=(spec, ready, go, out), daemon=True) for _ in range(clients)]
    try:
        for proc in procs:
            proc.start()
        for _ in procs:
            ready.get(timeout=60)
        started = time.time()
        cpu0 = proc_cpu(server_pids)
        go.set()
        reports = [out.get(timeout=duration + 180) for _ in procs]
        server_cpu = proc_cpu(server_pids) - cpu0
    finally:
        for proc in procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=5)
    failed = [r["error"] for r in reports if "error" in r]
    if failed:
        raise RuntimeError(f"client failed: {failed[0]}")
    latencies = [x for r in reports for x in r["latencies"]]
    elapsed = max(r["last"] for r in reports) - started
    return {
        "latencies": latencies,
        "count": len(latencies),
        "elapsed": elapsed,
        "per_min": len(latencies) / elapsed * 60 if elapsed > 0 else 0.0,
        "error_count": sum(r["error_count"] for r in reports),
        "server_cpu_ms": server_cpu * 1000 / max(1, len(latencies)),
        "client_cpu_ms": sum(r["cpu"] for r in reports) * 1000 / max(1, len(latencies)),
        "errors": [e for r in reports for e in r["errors"]][:5],
        "extras": [x for r in reports for x in r["extras"]],
    }


# --- the stack ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Stack:
    """The processes this run started; `stop()` ends every one of them (process groups)."""

    def __init__(self, workers: int, env_extra: dict[str, str]):
        self.workers = workers
        self.env = {**os.environ, **STACK_ENV, **env_extra}
        self.procs: dict[str, subprocess.Popen] = {}
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen:
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        log = open(LOG_DIR / f"{name}.log", "wb")
        proc = subprocess.Popen(argv, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        self.procs[name] = proc
        return proc

    def prepare_services(self) -> None:
        import psycopg2
        import redis

        conn = psycopg2.connect(f"{PG_URL}/postgres")
        conn.autocommit = True
        with conn.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
            cursor.execute(f"CREATE DATABASE {DB_NAME}")
        conn.close()
        for url in (BROKER, BACKEND):
            redis.Redis.from_url(url).flushdb()
        subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
                       cwd=ROOT, env=self.env, check=True, timeout=300)

    def start(self) -> None:
        py = sys.executable
        self._spawn("gunicorn", [
            py, "-m", "gunicorn", "config.wsgi", "-b", f"127.0.0.1:{self.port}",
            "-w", "2", "-k", "gthread", "--threads", "8", "--log-level", "warning",
        ])
        common = ["-P", "prefork", "-c", "2", "--without-mingle", "--without-gossip", "--loglevel", "WARNING"]
        for i in range(self.workers):
            self._spawn(f"junction-worker-{i}", [py, "-m", "celery", "-A", "config", "worker", *common,
                                                 "-Q", "default,code", "-n", f"benchj{i}@%h"])
            self._spawn(f"raw-worker-{i}", [py, "-m", "celery", "-A", "bench.rawtasks", "worker", *common,
                                            "-Q", "rawbench", "-n", f"benchr{i}@%h"])
        self._wait_http()
        self._wait_workers()

    def _check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}; see {LOG_DIR / (name + '.log')}")

    def _wait_http(self, timeout: float = 60) -> None:
        import requests

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                if requests.get(f"{self.base_url}/readyz", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"gunicorn not ready within {timeout} s")

    def _wait_workers(self, timeout: float = 60) -> None:
        from bench.rawtasks import app

        expected = {f"benchj{i}" for i in range(self.workers)} | {f"benchr{i}" for i in range(self.workers)}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            replies = app.control.ping(timeout=1.0) or []
            names = {name.split("@")[0] for reply in replies for name in reply}
            if expected <= names:
                return
        raise RuntimeError(f"workers did not answer within {timeout} s; logs in {LOG_DIR}")

    def worker_pids(self, prefix: str) -> list[int]:
        return [p.pid for name, p in self.procs.items() if name.startswith(prefix) and p.poll() is None]

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for name, proc in self.procs.items():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(timeout=10)
        self.procs.clear()


def setup_api(base_url: str) -> tuple[str, dict[str, str]]:
    """Register a user, log in, create an API key and the interactions; return key and ids."""
    import requests

    http = requests.Session()
    user = {"username": "bench", "email": "bench@example.com", "password": "bench-pass-Xy7!q2w9"}
    r = http.post(f"{base_url}/api/auth/register/", json=user, timeout=30)
    r.raise_for_status()
    r = http.post(f"{base_url}/api/auth/login/", json={k: user[k] for k in ("username", "password")}, timeout=30)
    r.raise_for_status()
    http.headers["Authorization"] = f"Bearer {r.json()['access']}"
    r = http.post(f"{base_url}/api/auth/api-keys/", json={"name": "bench"}, timeout=30)
    r.raise_for_status()
    key = r.json()["key"]
    http.headers["Authorization"] = f"Api-Key {key}"
    ids = {}
    for scenario, (tasks, _) in INTERACTIONS.items():
        r = http.post(f"{base_url}/api/interactions/", timeout=30,
                      json={"name": f"bench-{scenario}", "description": "benchmark", "tasks": tasks()})
        if r.status_code != 201:
            raise RuntimeError(f"creating {scenario}: {r.status_code} {r.text[:500]}")
        ids[scenario] = r.json()["id"]
        r = http.post(f"{base_url}/api/interactions/{ids[scenario]}/activate/", timeout=30)
        r.raise_for_status()
    return key, ids


# --- measurements ---------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (0-100), linear interpolation; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def cpu_busy(seconds: float = 2.0) -> float:
    """Share of CPU time not idle over `seconds`, machine-wide (0-1)."""
    def sample():
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        return sum(fields), fields[3] + fields[4]
    total0, idle0 = sample()
    time.sleep(seconds)
    total1, idle1 = sample()
    return 1 - (idle1 - idle0) / max(1, total1 - total0)


def other_activity(own_pids: set[int]) -> list[str]:
    """Command lines of other busy-looking processes (pytest, celery, gunicorn) not started here."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in own_pids:
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        if re.search(r"pytest|celery|gunicorn|manage\.py (serve|test)", cmd) and "bench" not in cmd:
            found.append(cmd[:120])
    return found


def descendants(pids: list[int]) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    seen, todo = set(), list(pids)
    while todo:
        pid = todo.pop()
        if pid not in seen:
            seen.add(pid)
            todo.extend(children.get(pid, []))
    return seen


def machine() -> dict[str, str]:
    import celery
    import django

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown")
    mem_kb = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                      if line.startswith("MemTotal")))
    return {
        "nproc": str(os.cpu_count()),
        "memory": f"{mem_kb / 1024 / 1024:.1f} GiB",
        "cpu": cpu,
        "python": platform.python_version(),
        "celery": celery.__version__,
        "django": django.__version__,
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": _git("rev-parse", "--short", "HEAD"),
        "dirty": _git("status", "--porcelain", "--", "config", "interactions", "tasks_catalog", "accounts"),
    }


def _git(*argv: str) -> str:
    try:
        return subprocess.run(["git", *argv], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def phase_breakdown(extras: list[dict[str, Any]], first: list[str], last: str) -> dict[str, float]:
    """Median ms of each stage of a session, from the client's clock and Junction's records.

    `first` are the root tasks, `last` the sink; all timestamps come from one machine's clock.
    """
    stages: dict[str, list[float]] = {k: [] for k in (
        "request → session row", "session row → first task claimed", "task body (claim → record)",
        "join: last predecessor recorded → sink claimed", "sink recorded → session finished",
        "session finished → response received", "total (client)")}
    for x in extras:
        tasks = x["tasks"]
        try:
            roots_start = min(tasks[t][0] for t in first)
            roots_end = max(tasks[t][1] for t in first)
            sink_start, sink_end = tasks[last]
        except (KeyError, TypeError, ValueError):
            continue
        stages["request → session row"].append(x["created"] - x["sent"])
        stages["session row → first task claimed"].append(roots_start - x["created"])
        stages["task body (claim → record)"].append(
            statistics.mean(end - start for start, end in tasks.values()))
        stages["join: last predecessor recorded → sink claimed"].append(sink_start - roots_end)
        stages["sink recorded → session finished"].append(x["finished"] - sink_end)
        stages["session finished → response received"].append(x["received"] - x["finished"])
        stages["total (client)"].append(x["received"] - x["sent"])
    return {k: statistics.median(v) * 1000 for k, v in stages.items() if v}


def start_profilers(stack: "Stack", seconds: float) -> list[tuple[str, subprocess.Popen, Path]]:
    """py-spy (if installed; profiling only, not a requirement) on gunicorn and the Junction workers."""
    exe = Path(sys.executable).parent / "py-spy"
    if not exe.exists():
        print("  (py-spy not installed: no profile)", flush=True)
        return []
    running = []
    for name, proc in stack.procs.items():
        if name == "gunicorn" or name.startswith("junction-worker"):
            out = LOG_DIR / f"profile-{name}.txt"
            argv = [str(exe), "record", "-p", str(proc.pid), "--subprocesses", "--nonblocking", "-r", "200",
                    "-d", str(int(seconds)), "-f", "raw", "-o", str(out),
                    # e.g. "--gil": only samples holding the GIL, i.e. Python CPU time
                    *os.environ.get("JUNCTION_BENCH_PYSPY_ARGS", "").split()]
            running.append((name, subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), out))
    return running


PROJECT_FRAME = re.compile(r"\((?:\S*/)?(?:accounts|config|integrations|interactions|tasks_catalog)/\S+\.py\)$")


def profile_summary(paths: list[Path], top: int = 25) -> dict[str, Any]:
    """Inclusive share of samples per project function, and the top self (leaf) frames overall.

    py-spy samples only threads that are running (not idle in a system call wait), so the
    shares are of CPU-ish time, per group of processes (gunicorn, workers).
    """
    inclusive: dict[str, int] = {}
    leaf: dict[str, int] = {}
    total = main_process = 0
    for path in paths:
        if not path.exists():
            continue
        for line in path.read_text(errors="replace").splitlines():
            stack, _, count = line.rpartition(" ")
            if not count.isdigit():
                continue
            n = int(count)
            total += n
            frames = [f for f in stack.split(";") if not f.startswith(("process ", "thread "))]
            if "/.venv/" in stack.split(";")[0] and stack.count(";process ") == 0 and "gunicorn" not in stack:
                main_process += n  # a celery worker's main process (not a pool child)
            seen = set()
            for frame in frames:
                key = re.sub(r":\d+\)$", ")", frame)  # one entry per function, not per line
                if key not in seen and PROJECT_FRAME.search(key):
                    seen.add(key)
                    inclusive[key] = inclusive.get(key, 0) + n
            if frames:
                key = re.sub(r":\d+\)$", ")", frames[-1]).replace(str(ROOT) + "/", "")
                key = re.sub(r"\(.*/site-packages/", "(", key)
                leaf[key] = leaf.get(key, 0) + n
    short = lambda k: k.replace(str(ROOT) + "/", "")  # noqa: E731
    return {
        "samples": total,
        "main_process_share": main_process / total if total else 0.0,
        "inclusive": [(short(k), v / total) for k, v in sorted(inclusive.items(), key=lambda kv: -kv[1])[:top]] if total else [],
        "self": [(k, v / total) for k, v in sorted(leaf.items(), key=lambda kv: -kv[1])[:top]] if total else [],
    }


def pg_counters() -> dict[str, int]:
    import psycopg2

    conn = psycopg2.connect(f"{PG_URL}/postgres")
    try:
        with conn.cursor() as cursor:
            cursor.execute("SELECT xact_commit, sessions, tup_inserted, tup_updated, tup_returned, tup_fetched "
                           "FROM pg_stat_database WHERE datname = %s", [DB_NAME])
            row = cursor.fetchone()
    finally:
        conn.close()
    return dict(zip(("xact_commit", "sessions", "tup_inserted", "tup_updated", "tup_returned", "tup_fetched"), row))


def run_benchmark(args) -> dict[str, Any]:
    p = {
        "workers": args.workers, "clients": args.clients,
        "throughput_seconds": 8 if args.quick else args.duration,
        "alone_runs": 40 if args.quick else 200,
        "chain_runs": 5 if args.quick else 20,
        "fanout_runs": 3 if args.quick else 10,
        "delay_runs": 2 if args.quick else 5,
        "warmup": 2 if args.quick else 5,
    }
    results: dict[str, Any] = {"params": p, "machine": machine()}
    own = {os.getpid()}
    results["others_before"] = other_activity(own)
    results["busy_before"] = cpu_busy(2.0)
    print(f"machine busy before start: {results['busy_before']:.0%}; other stacks/tests: "
          f"{len(results['others_before'])}", flush=True)

    stack = Stack(args.workers, dict(kv.split("=", 1) for kv in args.env))
    try:
        print("preparing database and Redis …", flush=True)
        stack.prepare_services()
        print(f"starting gunicorn on {stack.base_url} and {args.workers}+{args.workers} workers …", flush=True)
        stack.start()
        key, ids = setup_api(stack.base_url)

        def spec(side: str, scenario: str, keep_times: bool = False) -> dict[str, Any]:
            return {"side": side, "scenario": scenario, "base_url": stack.base_url, "api_key": key,
                    "interaction": ids[scenario], "input": INTERACTIONS[scenario][1], "keep_times": keep_times}

        def measure(scenario: str, clients: int, duration: float, count: int, keep_times: bool = False):
            out = {}
            for side in ("raw", "junction"):
                # Warm up: every pool process loads code, opens connections, compiles the version.
                drive(spec(side, scenario), max(clients, 4), 30, p["warmup"])
                profile = side == "junction" and scenario == "diamond" and clients > 1 and args.profile
                profilers = start_profilers(stack, duration + 3) if profile else []
                # Idle PostgreSQL backends publish their statistics within 10 s (PG 15): wait it out.
                count_db = side == "junction" and clients == 1 and args.profile
                before = (time.sleep(11), pg_counters())[1] if count_db else {}
                server = descendants(stack.worker_pids("junction-worker") + stack.worker_pids("gunicorn")
                                     if side == "junction" else stack.worker_pids("raw-worker"))
                r = drive(spec(side, scenario, keep_times), clients, duration, count, server)
                if before:
                    time.sleep(11)
                    after = pg_counters()
                    r["pg_per_session"] = {k: (after[k] - before[k]) / max(1, r["count"]) for k in before}
                    print(f"    PostgreSQL per session: {r['pg_per_session']}", flush=True)
                for name, proc, _ in profilers:
                    try:
                        proc.wait(timeout=duration + 60)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                if profilers:
                    r["profile"] = {
                        "gunicorn": profile_summary([o for n, _, o in profilers if n == "gunicorn"]),
                        "workers": profile_summary([o for n, _, o in profilers if n != "gunicorn"]),
                    }
                print(f"  {scenario:9s} {side:8s} clients={clients} n={r['count']:5d} "
                      f"p50={pct(r['latencies'], 50) * 1000:8.1f} ms  p99={pct(r['latencies'], 99) * 1000:8.1f} ms  "
                      f"{r['per_min']:8.0f}/min  cpu/session server {r['server_cpu_ms']:6.1f} ms "
                      f"client {r['client_cpu_ms']:5.1f} ms  errors={r['error_count']}"
                      + (f"  e.g. {r['errors'][0]}" if r["errors"] else ""), flush=True)
                out[side] = r
            return out

        own |= descendants(list(own) + [proc.pid for proc in stack.procs.values()])
        print("measuring …", flush=True)
        t = p["throughput_seconds"]
        results["diamond_load"] = measure("diamond", args.clients, t, 1_000_000, keep_times=True)
        results["diamond_alone"] = measure("diamond", 1, 120, p["alone_runs"], keep_times=True)
        results["chain20"] = measure("chain20", 1, 300, p["chain_runs"])
        results["fanout50"] = measure("fanout50", 1, 300, p["fanout_runs"])
        results["delay"] = measure("delay", 1, 120, p["delay_runs"], keep_times=True)
        results["others_after"] = other_activity(own)
    finally:
        print("stopping the stack …", flush=True)
        stack.stop()
    results["busy_after"] = cpu_busy(2.0)
    return results


# --- report ---------------------------------------------------------------------------------


def summarise(results: dict[str, Any]) -> list[dict[str, Any]]:
    def both(key: str, fn: Callable[[dict], float]) -> tuple[float, float]:
        return fn(results[key]["junction"]), fn(results[key]["raw"])

    med = lambda r: statistics.median(r["latencies"]) if r["latencies"] else float("nan")  # noqa: E731
    c = results["params"]["clients"]
    rows = []

    def row(metric, unit, j, r, target=None, ok=None, higher_is_better=False):
        rows.append({"metric": metric, "unit": unit, "junction": j, "raw": r,
                     "ratio": j / r if r else float("nan"), "target": target or "—",
                     "verdict": "—" if ok is None else ("met" if ok else "missed")})

    j, r = both("diamond_load", lambda x: x["per_min"])
    row(f"diamond throughput, {c} clients", "sessions/min", j, r, "≥ 0.70× raw", j >= 0.7 * r)
    j, r = both("diamond_load", lambda x: pct(x["latencies"], 50) * 1000)
    row(f"diamond `Prefer: wait` p50, {c} clients", "ms", j, r)
    j, r = both("diamond_load", lambda x: pct(x["latencies"], 99) * 1000)
    row(f"diamond `Prefer: wait` p99, {c} clients", "ms", j, r)
    j, r = both("diamond_load", lambda x: x["server_cpu_ms"])
    row(f"diamond CPU per session, {c} clients: workers (+ gunicorn for Junction)", "ms", j, r)
    j, r = both("diamond_load", lambda x: x["server_cpu_ms"] + x["client_cpu_ms"])
    row(f"diamond CPU per session, {c} clients: all benchmark processes incl. clients", "ms", j, r)
    j, r = both("diamond_alone", lambda x: pct(x["latencies"], 50) * 1000)
    row("diamond `Prefer: wait` p50, 1 client alone", "ms", j, r, "< 30 ms", j < 30)
    j, r = both("diamond_alone", lambda x: pct(x["latencies"], 99) * 1000)
    row("diamond `Prefer: wait` p99, 1 client alone", "ms", j, r)
    j, r = both("chain20", lambda x: med(x) / 20 * 1000)
    row("chain of 20: per-task overhead (median session / 20)", "ms", j, r, "≤ 1.5× raw", j <= 1.5 * r)
    j, r = both("fanout50", lambda x: med(x) * 1000)
    row("fan-out 1 → 50 → 1: total time (median)", "ms", j, r)
    j, r = both("delay", lambda x: med(x))
    row("two parallel 1 s delays → join: session wall time (median)", "s", j, r, "< 1.1 s", j < 1.1)
    return rows


def _fmt(value: float, unit: str) -> str:
    if value != value:  # NaN
        return "n/a"
    if unit == "s":
        return f"{value:.3f}"
    if unit == "sessions/min":
        return f"{value:,.0f}"
    return f"{value:.1f}"


def table(rows: list[dict[str, Any]]) -> list[str]:
    lines = ["| metric | unit | Junction | raw Celery | ratio (J / raw) | target | verdict |",
             "|---|---|---:|---:|---:|---|---|"]
    for x in rows:
        lines.append(f"| {x['metric']} | {x['unit']} | {_fmt(x['junction'], x['unit'])} | "
                     f"{_fmt(x['raw'], x['unit'])} | {x['ratio']:.2f}× | {x['target']} | {x['verdict']} |")
    return lines


def markdown(results: dict[str, Any], rows: list[dict[str, Any]], argv: list[str]) -> str:
    m, p = results["machine"], results["params"]
    idle = (not results["others_before"] and not results.get("others_after")
            and results["busy_before"] < 0.15)
    lines = [
        RESULTS_START,
        "## Results",
        "",
        f"Measured {m['date']} with `python -m bench.run {' '.join(argv)}`".rstrip() + ".",
        "",
        f"- Code: commit `{m['commit']}`" + (" plus uncommitted changes to "
        + ", ".join(sorted({line[3:] for line in m['dirty'].splitlines()})) if m["dirty"] else "") + ".",
        f"- Machine: {m['nproc']} CPUs ({m['cpu']}), {m['memory']} RAM; Python {m['python']}, "
        f"Celery {m['celery']}, Django {m['django']}; PostgreSQL and Redis local.",
        f"- Parameters: {p['workers']} Junction workers and {p['workers']} raw workers "
        f"(`-P prefork -c 2` each); gunicorn `-w 2 -k gthread --threads 8`; {p['clients']} clients for "
        f"{p['throughput_seconds']} s of diamond load; {p['alone_runs']} diamond runs alone, "
        f"{p['chain_runs']} chain runs, {p['fanout_runs']} fan-out runs, {p['delay_runs']} delay runs; "
        f"{p['warmup']} warm-up runs per client before each measurement. Latency is the client's "
        f"round trip: `POST …/run/` with `Prefer: {WAIT_HEADER}` for Junction, `apply_async()` + "
        f"`get()` for raw Celery.",
        f"- Machine otherwise idle: {'yes' if idle else 'no'} (CPU busy before start "
        f"{results['busy_before']:.0%}, after stop {results['busy_after']:.0%}; other test/worker "
        f"processes seen: {len(results['others_before'])} before, {len(results.get('others_after', []))} "
        f"during the run).",
        "",
        *table(rows),
        "",
    ]
    errors = {k: results[k][s]["error_count"] for k in ("diamond_load", "diamond_alone", "chain20", "fanout50", "delay")
              for s in ("junction", "raw") if results[k][s]["error_count"]}
    lines.append(f"Failed calls: {errors or 'none'}.")
    for key, title, first, last in (("diamond_alone", "diamond, 1 client", ["a", "b"], "c"),
                                    ("diamond_load", f"diamond, {p['clients']} clients", ["a", "b"], "c")):
        stages = phase_breakdown(results[key]["junction"]["extras"], first, last)
        if stages:
            lines += ["", f"Where a Junction session's time goes ({title}; medians from the session's "
                          "recorded timestamps and the client's clock):", "",
                      "| stage | ms |", "|---|---:|"]
            lines += [f"| {k} | {v:.1f} |" for k, v in stages.items()]
    lines.append(RESULTS_END)
    return "\n".join(lines) + "\n"


DOC_TEMPLATE = """# Benchmarks

`bench/run.py` starts the distributed stack and measures Junction against hand-written Celery
canvases of no-op tasks in the same run. See the module docstring for what it does.

{results}
"""


def write_doc(section: str) -> None:
    DOC.parent.mkdir(parents=True, exist_ok=True)
    text = DOC.read_text() if DOC.exists() else DOC_TEMPLATE.format(results=RESULTS_START + "\n" + RESULTS_END)
    pattern = re.compile(re.escape(RESULTS_START) + ".*?" + re.escape(RESULTS_END) + r"\n?", re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    DOC.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="~1 minute smoke run")
    parser.add_argument("--workers", type=int, default=2, help="celery worker processes per side (default 2)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients for diamond load (default 8)")
    parser.add_argument("--duration", type=float, default=30, help="seconds of diamond load per side (default 30)")
    parser.add_argument("--profile", action="store_true",
                        help="py-spy gunicorn and the Junction workers during the diamond load")
    parser.add_argument("--no-doc", action="store_true", help=f"do not rewrite {DOC.relative_to(ROOT)}")
    parser.add_argument("--json", type=Path, default=LOG_DIR / "results.json", help="raw results file")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="extra environment for gunicorn and workers (repeatable)")
    raw_argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(raw_argv)
    if not 1 <= args.workers <= 16 or not 1 <= args.clients <= 64 or not 1 <= args.duration <= 600:
        parser.error("--workers 1-16, --clients 1-64, --duration 1-600")

    def on_term(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    results = run_benchmark(args)
    rows = summarise(results)
    print()
    print("\n".join(table(rows)))
    for key in ("diamond_alone", "diamond_load"):
        stages = phase_breakdown(results[key]["junction"]["extras"], ["a", "b"], "c")
        print(f"\n{key}: where a Junction session's time goes (median ms)")
        for name, value in stages.items():
            print(f"  {name:50s} {value:8.1f}")
    prof = results["diamond_load"]["junction"].get("profile")
    for group, summary in (prof or {}).items():
        print(f"\nprofile, {group} ({summary['samples']} samples; share in celery main processes "
              f"{summary['main_process_share']:.0%}): project functions, inclusive share")
        for name, share in summary["inclusive"][:15]:
            print(f"  {share:6.1%}  {name}")
        print(f"profile, {group}: top leaf frames")
        for name, share in summary["self"][:15]:
            print(f"  {share:6.1%}  {name}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({**results, "rows": rows}, default=str))
    if not args.no_doc:
        write_doc(markdown(results, rows, raw_argv))
        print(f"\nwrote {DOC.relative_to(ROOT)}; raw results in {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
