"""Junction benchmark: the distributed stack against hand-written Celery canvases, same run.

    .venv/bin/python -m bench.run                  # full run (~12 min), rewrites docs/benchmarks.md
    .venv/bin/python -m bench.run --quick          # ~4 min smoke run (small crowd)
    .venv/bin/python -m bench.run --pools prefork,threads,gevent   # I/O workloads once per pool

Everything on 127.0.0.1: PostgreSQL database `junction_bench` (recreated), Redis dbs 10 (broker)
and 11 (results) (flushed), the Procfile's web server on a free port, N Junction workers, N raw
workers with Celery's default delivery settings and N with Junction's, and a local HTTP echo
server for the I/O scenarios. docs/benchmarks.md describes the scenarios and every figure.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import httpserver, querycount, report  # noqa: E402
from bench.clients import SIDES, drive  # noqa: E402
from bench.counters import (  # noqa: E402
    MemorySampler, PgStats, RedisStats, cpu_seconds, descendants, redis_commands, tasks_run_by_workers,
)
from bench.crowd import run_crowd  # noqa: E402
from bench.machine import cpu_busy, machine, other_activity  # noqa: E402
from bench.profiling import profile_summary, start_profilers  # noqa: E402
from bench.stack import (  # noqa: E402
    LOG_DIR, POOLS, QUERYCOUNT_DIR, Stack, celery_default_fleet, flush_redis, free_port, prepare_services,
    stack_env, vacuum, web_command, worker_fleet,
)
from bench.workloads import CROWD_DELAY_SECONDS, interactions  # noqa: E402

GROUPS = {"diamond_load": "pure", "diamond_alone": "pure", "chain20": "pure", "fanout50": "pure",
          "io_diamond_load": "io", "io_diamond_alone": "io", "io_chain20": "io", "io_fanout50": "io",
          "delay": "delay"}
ALL_GROUPS = ("pure", "io", "delay", "crowd")


def measurement_plan(p: dict[str, Any], clients: int, seconds: float) -> dict[str, tuple]:
    """Measurement key → (scenario, clients, time bound s, count bound, keep session timestamps)."""
    return {
        "diamond_load": ("diamond", clients, seconds, 1_000_000, True),
        "diamond_alone": ("diamond", 1, 120, p["alone_runs"], True),
        "chain20": ("chain20", 1, 300, p["chain_runs"], False),
        "fanout50": ("fanout50", 1, 300, p["fanout_runs"], False),
        "io_diamond_load": ("io_diamond", clients, seconds, 1_000_000, True),
        "io_diamond_alone": ("io_diamond", 1, 120, p["alone_runs"], True),
        "io_chain20": ("io_chain20", 1, 300, p["chain_runs"], False),
        "io_fanout50": ("io_fanout50", 1, 300, p["fanout_runs"], False),
        "delay": ("delay", 1, 120, p["delay_runs"], True),
    }


def run_params(args: argparse.Namespace) -> dict[str, Any]:
    quick = args.quick
    return {
        "workers": args.workers, "clients": args.clients, "io_latency_ms": args.io_latency_ms,
        "throughput_seconds": 6 if quick else args.duration,
        "alone_runs": 20 if quick else 200,
        "chain_runs": 3 if quick else 20,
        "fanout_runs": 2 if quick else 10,
        "delay_runs": 2 if quick else 5,
        "warmup": 2 if quick else 5,
        "crowd": 0 if args.skip_crowd else (args.crowd if args.crowd is not None else (300 if quick else 2000)),
        "crowd_rate": args.crowd_rate if args.crowd_rate is not None else (50.0 if quick else 100.0),
    }


def setup_api(base_url: str, definitions: dict[str, tuple[dict, dict]], user: str) -> tuple[str, dict[str, str]]:
    """Register a user, log in, create an API key and the interactions; return key and ids."""
    import requests

    http = requests.Session()
    account = {"username": user, "email": f"{user}@example.com", "password": "bench-pass-Xy7!q2w9"}
    r = http.post(f"{base_url}/api/auth/register/", json=account, timeout=30)
    r.raise_for_status()
    r = http.post(f"{base_url}/api/auth/login/", json={k: account[k] for k in ("username", "password")}, timeout=30)
    r.raise_for_status()
    http.headers["Authorization"] = f"Bearer {r.json()['access']}"
    r = http.post(f"{base_url}/api/auth/api-keys/", json={"name": "bench"}, timeout=30)
    r.raise_for_status()
    key = r.json()["key"]
    http.headers["Authorization"] = f"Api-Key {key}"
    ids = {}
    for scenario, (tasks, _) in definitions.items():
        r = http.post(f"{base_url}/api/interactions/", timeout=30,
                      json={"name": f"bench-{scenario}", "description": "benchmark", "tasks": tasks})
        if r.status_code != 201:
            raise RuntimeError(f"creating {scenario}: {r.status_code} {r.text[:500]}")
        ids[scenario] = r.json()["id"]
        http.post(f"{base_url}/api/interactions/{ids[scenario]}/activate/", timeout=30).raise_for_status()
    return key, ids


class Bench:
    """One started stack and its API user: measures scenarios on every side and counts their cost."""

    def __init__(self, *, stack: Stack, params: dict[str, Any], echo_url: str, user: str,
                 querycount_on: bool, profile: str | None = None):
        self.stack, self.p, self.echo_url = stack, params, echo_url
        self.definitions = interactions(echo_url, params["io_latency_ms"])
        self.api_key, self.ids = setup_api(stack.base_url, self.definitions, user)
        self.querycount_on = querycount_on
        self.profile = profile
        self.redis = RedisStats()
        self.redis.measure_idle()
        self.pg = PgStats()
        self.pg.touched()
        self.pg_pending: list[tuple[dict[str, Any], int]] = []  # Junction windows not yet settled
        self.pg_last: int | None = None  # the last settled reading

    def spec(self, side: str, scenario: str, keep_times: bool = False) -> dict[str, Any]:
        return {"side": side, "scenario": scenario, "base_url": self.stack.base_url, "api_key": self.api_key,
                "interaction": self.ids[scenario], "input": self.definitions[scenario][1],
                "keep_times": keep_times, "echo_url": self.echo_url, "sleep_ms": self.p["io_latency_ms"]}

    def server_pids(self, side: str) -> set[int]:
        if side == "junction":
            return descendants(self.stack.pids("web", "junction-worker"))
        return descendants(self.stack.pids(f"{side}-worker"))

    def measure(self, scenario: str, clients: int, duration: float, count: int,
                keep_times: bool = False) -> dict[str, dict[str, Any]]:
        """Raw sides first, then Junction (so PostgreSQL settles while raw Celery runs)."""
        out = {}
        for side in ("raw-default", "raw-junction", "junction"):
            self.stack.check_alive()
            started = time.monotonic()
            out[side] = self._measure_side(side, scenario, clients, duration, count, keep_times)
            _print_line(scenario, side, clients, out[side], time.monotonic() - started)
        return out

    def _measure_side(self, side: str, scenario: str, clients: int, duration: float, count: int,
                      keep_times: bool) -> dict[str, Any]:
        junction = side == "junction"
        if junction:
            vacuum()  # as autovacuum would between the scenarios (bench/stack.py `vacuum`)
            self.pg.touched()  # the vacuum's own transactions settle into the window before
            self._resolve_pg(self.pg.settled())
        redis_before, window_start = redis_commands(), time.monotonic()
        warm: dict[str, Any] = {}

        def warmed_up() -> None:
            # Statements are counted over the measured calls only: warm, with every process's
            # caches (the compiled version, the caller) already loaded by the warm-up calls.
            time.sleep(3 * querycount.FLUSH_INTERVAL)
            warm.update(queries=querycount.read_totals(QUERYCOUNT_DIR), since=datetime.now(timezone.utc))

        profilers = (start_profilers(self.stack, duration + 15)
                     if junction and self.profile == scenario and clients > 1 else [])
        r = drive(self.spec(side, scenario, keep_times), clients, duration, count, self.server_pids(side),
                  warmup=self.p["warmup"], warmed_up=warmed_up)
        time.sleep(3 * querycount.FLUSH_INTERVAL)
        calls = r["warmup_calls"] + r["calls"]
        r["counters"] = self._redis_counters(redis_before, redis_commands(), time.monotonic() - window_start, calls)
        if junction:
            self.pg.touched()
            self.pg_pending.append((r, calls))
            if self.querycount_on:
                ran = tasks_run_by_workers(warm["since"], datetime.now(timezone.utc))
                r["counters"].update(_query_counters(warm["queries"], querycount.read_totals(QUERYCOUNT_DIR),
                                                     r["calls"], ran))
        if profilers:
            r["profile"] = _collect_profiles(profilers, duration)
        return r

    def _redis_counters(self, before: dict[str, int], after: dict[str, int], seconds: float,
                        calls: int) -> dict[str, Any]:
        delta = self.redis.delta(before, after, seconds)
        per = {k: v / max(1, calls) for k, v in sorted(delta.items(), key=lambda kv: -kv[1])}
        return {"calls": calls, "redis_commands": sum(per.values()), "broker_messages": per.get("lpush", 0.0),
                "redis_top": dict(list(per.items())[:8])}

    def _resolve_pg(self, commits_now: int | None) -> None:
        """Every Junction window since the last settled reading gets its share of the commits."""
        if self.pg_last is not None and commits_now is not None and self.pg_pending:
            pending_calls = sum(calls for _, calls in self.pg_pending)
            for r, _ in self.pg_pending:
                r["counters"]["pg_commits"] = (commits_now - self.pg_last) / max(1, pending_calls)
        self.pg_pending.clear()
        self.pg_last = commits_now

    def finish_counting(self) -> None:
        self._resolve_pg(self.pg.settled())

    def crowd(self, callers: int, rate: float) -> dict[str, Any]:
        groups = {"web": self.stack.pids("web"), "workers": self.stack.pids("junction-worker")}
        server = descendants(groups["web"] + groups["workers"])
        vacuum()  # as before every Junction measurement (the scenarios before left dead rows)
        cpu0 = cpu_seconds(server)
        print(f"  crowd: {callers} callers at {rate:g}/s, each `Prefer: wait=30` on a "
              f"{CROWD_DELAY_SECONDS:g} s delay …", flush=True)
        with MemorySampler(groups) as memory:
            summary = run_crowd(base_url=self.stack.base_url, api_key=self.api_key, interaction=self.ids["crowd"],
                                callers=callers, rate=rate, delay_seconds=CROWD_DELAY_SECONDS)
        summary.update(rate=rate, delay=CROWD_DELAY_SECONDS, memory=memory.peaks,
                       server_cpu_s=cpu_seconds(server) - cpu0)
        print(f"  crowd: {summary['answered_in_time']}/{summary['callers']} answered within 11 s; "
              f"statuses {summary['statuses']}; p50 +{summary['excess_p50']:.2f} s, "
              f"p99 +{summary['excess_p99']:.2f} s; peak memory {memory.peaks}", flush=True)
        self.pg.touched()
        return summary


def _query_counters(before: dict[str, dict[str, int]], after: dict[str, dict[str, int]], calls: int,
                    tasks_run: int) -> dict[str, Any]:
    """Statements and commits per call, and per worker task counted two ways: per Celery task a
    worker ran (`worker_tasks`: delivered messages, fused tasks not counted) and per task record a
    worker ran (`tasks_run`: delivered or fused into a step)."""
    def delta(role: str, field: str) -> int:
        return after.get(role, {}).get(field, 0) - before.get(role, {}).get(field, 0)

    worker_tasks = delta("worker", "tasks")
    worker_statements = delta("worker", "statements")
    worker_commits = delta("worker", "autocommit_statements") + delta("worker", "commits")
    web_commits = delta("web", "autocommit_statements") + delta("web", "commits")
    n = max(1, calls)
    return {
        "statements": (worker_statements + delta("web", "statements")) / n,
        "web_statements": delta("web", "statements") / n,
        "worker_statements": worker_statements / n,
        "transactions_counted": (worker_commits + web_commits) / n,
        "worker_tasks": worker_tasks / n,
        "statements_per_worker_task": worker_statements / worker_tasks if worker_tasks else float("nan"),
        "commits_per_worker_task": worker_commits / worker_tasks if worker_tasks else float("nan"),
        "tasks_run_by_workers": tasks_run / n,
        "statements_per_task_run": worker_statements / tasks_run if tasks_run else float("nan"),
        "commits_per_task_run": worker_commits / tasks_run if tasks_run else float("nan"),
    }


def _collect_profiles(profilers: list, duration: float) -> dict[str, Any]:
    for _, proc, _ in profilers:
        try:
            proc.wait(timeout=duration + 60)
        except subprocess.TimeoutExpired:
            proc.kill()
    return {"web": profile_summary([o for n, _, o in profilers if n == "web"]),
            "workers": profile_summary([o for n, _, o in profilers if n != "web"])}


def _print_line(scenario: str, side: str, clients: int, r: dict[str, Any], seconds: float) -> None:
    c = r.get("counters", {})
    extra = "".join(f"  {label}={c[k]:.1f}" for k, label in (
        ("redis_commands", "redis"), ("broker_messages", "msgs"), ("statements", "sql"),
        ("statements_per_worker_task", "sql/msg"), ("statements_per_task_run", "sql/wtask"),
        ("commits_per_task_run", "commits/wtask")) if k in c)
    print(f"  {scenario:12s} {side:12s} c={clients} n={r['count']:5d} "
          f"p50={report.pct(r['latencies'], 50) * 1000:8.1f} ms p99={report.pct(r['latencies'], 99) * 1000:8.1f} ms "
          f"{r['per_min']:7.0f}/min cpu {r['server_cpu_ms']:5.1f} ms{extra} errors={r['error_count']}"
          + (f" e.g. {r['errors'][0]}" if r["errors"] else "") + f" [{seconds:.0f} s]", flush=True)


# --- the runs -------------------------------------------------------------------------------


class EchoServer:
    """The I/O scenarios' HTTP server for the whole run; measures its ceiling once."""

    def __init__(self, processes: int):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/echo"
        self.procs = httpserver.start(self.port, processes, LOG_DIR)
        self.processes = processes
        self.ceiling = httpserver.ceiling(self.url)
        print(f"HTTP echo server: {processes} process(es) on 127.0.0.1:{self.port}, ceiling "
              f"≈ {self.ceiling:,.0f} requests/s from one asyncio client", flush=True)

    def stop(self) -> None:
        for proc in self.procs:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                proc.kill()


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    p = run_params(args)
    fleet = worker_fleet(args.workers, args.pool, args.concurrency)
    results: dict[str, Any] = {"params": p, "machine": machine(), "fleet": fleet.__dict__, "measurements": {}}
    own = {os.getpid()}
    results["others_before"] = other_activity(own)
    results["busy_before"] = cpu_busy(2.0)
    print(f"machine busy before start: {results['busy_before']:.0%}; other stacks/tests: "
          f"{len(results['others_before'])}", flush=True)
    env = stack_env(dict(kv.split("=", 1) for kv in args.env), querycount=not args.no_querycount)
    print("preparing database and Redis …", flush=True)
    prepare_services(env)
    echo = EchoServer(args.http_processes)
    results["echo"] = {"processes": echo.processes, "ceiling_rps": echo.ceiling}
    results["web_command"] = web_command(args.web)
    results["web_source"] = "--web" if args.web else "the Procfile's `web:`"
    raw_default = celery_default_fleet(fleet.processes)
    results["raw_default_fleet"] = raw_default.__dict__
    stack = Stack(fleet, env, results["web_command"], raw_default=raw_default)
    try:
        print(f"starting the web server ({results['web_command']}) and {fleet.processes} × 3 worker "
              f"processes (Junction and raw with its settings -P {fleet.pool} -c {fleet.concurrency}; raw with "
              f"Celery's defaults -P {raw_default.pool} -c {raw_default.concurrency}) …", flush=True)
        stack.start()
        bench = Bench(stack=stack, params=p, echo_url=echo.url, user="bench",
                      querycount_on=not args.no_querycount, profile=args.profile)
        own |= descendants(list(own) + [proc.pid for proc in stack.procs.values()] + [e.pid for e in echo.procs])
        t, c = p["throughput_seconds"], args.clients
        print("measuring …", flush=True)
        for key, (scenario, clients, duration, count, keep_times) in measurement_plan(p, c, t).items():
            if GROUPS[key] in args.only:
                results["measurements"][key] = bench.measure(scenario, clients, duration, count, keep_times)
        print("  waiting for PostgreSQL's statistics to settle …", flush=True)
        bench.finish_counting()
        if p["crowd"] and "crowd" in args.only:
            # Last: the crowd leaves a backlog of sessions behind, and the stack is stopped after it.
            results["crowd"] = bench.crowd(p["crowd"], p["crowd_rate"])
        results["others_after"] = other_activity(own)
    finally:
        print("stopping the stack …", flush=True)
        stack.stop()
        echo.stop()
    results["busy_after"] = cpu_busy(2.0)
    return results


def run_pools(args: argparse.Namespace, pools: list[str]) -> dict[str, Any]:
    """The I/O workloads once per worker pool (Junction and both raw fleets on that pool)."""
    p = run_params(args)
    results: dict[str, Any] = {"params": p, "machine": machine(), "pools": []}
    env = stack_env(dict(kv.split("=", 1) for kv in args.env), querycount=not args.no_querycount)
    print("preparing database and Redis …", flush=True)
    prepare_services(env)
    echo = EchoServer(args.http_processes)
    results["echo"] = {"processes": echo.processes, "ceiling_rps": echo.ceiling}
    try:
        for pool in pools:
            results["pools"].append(_run_one_pool(args, p, env, echo, pool))
    finally:
        echo.stop()
    return results


def _run_one_pool(args, p, env, echo: EchoServer, pool: str) -> dict[str, Any]:
    fleet = worker_fleet(args.workers, pool, args.concurrency)
    outcome: dict[str, Any] = {"fleet": fleet.__dict__, "measurements": {}}
    print(f"pool {pool}: {fleet.processes} × celery worker -P {pool} -c {fleet.concurrency} per side …", flush=True)
    flush_redis()
    stack = Stack(fleet, env, web_command(args.web))
    try:
        stack.start()
        bench = Bench(stack=stack, params=p, echo_url=echo.url, user=f"bench-{pool}",
                      querycount_on=not args.no_querycount)
        groups = {"workers": stack.pids("junction-worker")}
        with MemorySampler(groups) as memory:
            m = outcome["measurements"]
            for key, (scenario, clients, duration, count, _) in measurement_plan(
                    p, args.clients, p["throughput_seconds"]).items():
                if GROUPS[key] == "io":
                    m[key] = bench.measure(scenario, clients, duration, count)
        outcome["memory"] = memory.peaks["workers"]
        errors = sum(m[k][s]["error_count"] for k in m for s in SIDES)
        outcome["status"] = "ok" if not errors else f"{errors} failed calls, e.g. " + next(
            e for k in m for s in SIDES for e in m[k][s]["errors"])[:160]
    except Exception as exc:  # a pool that cannot run is a row of the table, not the end of the run
        outcome["status"] = f"failed: {type(exc).__name__}: {exc}"[:300]
        print(f"  pool {pool} {outcome['status']}", flush=True)
    finally:
        stack.stop()
    return outcome


# --- command line ---------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="~3 minute smoke run (shorter loads, small crowd)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes per side (default 2)")
    parser.add_argument("--pool", choices=POOLS, help="Junction's (and the raw fleets') worker pool "
                        "(default: the Procfile's, else prefork)")
    parser.add_argument("--concurrency", type=int, help="pool size per worker process "
                        "(default: the Procfile's, else prefork 2, threads 8, gevent 32, solo 1)")
    parser.add_argument("--pools", help="comma-separated pools: run the I/O workloads once per pool and "
                        "write the pool comparison instead of the main results")
    parser.add_argument("--web", metavar="COMMAND", help="the web server's command instead of the Procfile's "
                        "`web:` ($PORT and ${VAR:-default} expanded, 0.0.0.0 bound as 127.0.0.1)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients for the diamond loads (default 8)")
    parser.add_argument("--duration", type=float, default=30, help="seconds of each diamond load per side (default 30)")
    parser.add_argument("--io-latency-ms", type=int, default=10,
                        help="the echo server's answer delay in the I/O scenarios (default 10 ms)")
    parser.add_argument("--http-processes", type=int, default=2, help="echo server processes (default 2)")
    parser.add_argument("--only", default=",".join(ALL_GROUPS),
                        help=f"comma-separated scenario groups to run (default all: {','.join(ALL_GROUPS)})")
    parser.add_argument("--skip-crowd", action="store_true", help="leave out the waiting crowd")
    parser.add_argument("--crowd", type=int, help="callers in the crowd (default 2000; --quick 300)")
    parser.add_argument("--crowd-rate", type=float, help="new callers per second (default 100; --quick 50)")
    parser.add_argument("--no-querycount", action="store_true",
                        help="run config.settings without the in-process statement counter")
    parser.add_argument("--profile", nargs="?", const="diamond", choices=("diamond", "io_diamond"),
                        help="py-spy the web server and Junction workers during a diamond's load "
                             "(default the pure diamond; `--profile io_diamond` for the I/O one)")
    parser.add_argument("--no-doc", action="store_true", help="do not rewrite docs/benchmarks.md")
    parser.add_argument("--json", type=Path, default=LOG_DIR / "results.json", help="raw results file")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="extra environment for the web server and workers (repeatable)")
    args = parser.parse_args(argv)
    if not 1 <= args.workers <= 16 or not 1 <= args.clients <= 64 or not 1 <= args.duration <= 600:
        parser.error("--workers 1-16, --clients 1-64, --duration 1-600")
    if args.crowd is not None and not 1 <= args.crowd <= 5000:
        parser.error("--crowd 1-5000")
    if args.crowd_rate is not None and not 1 <= args.crowd_rate <= 500:
        parser.error("--crowd-rate 1-500")
    args.only = set(args.only.split(","))
    if not args.only <= set(ALL_GROUPS):
        parser.error(f"--only: choose from {','.join(ALL_GROUPS)}")
    if args.pools and not set(args.pools.split(",")) <= set(POOLS):
        parser.error(f"--pools: choose from {','.join(POOLS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    raw_argv = sys.argv[1:] if argv is None else argv
    args = parse_args(raw_argv)

    def on_term(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    if args.pools:
        results = run_pools(args, args.pools.split(","))
        section = report.pools_section(results, raw_argv)
        markers = report.POOLS_MARKERS
    else:
        results = run_benchmark(args)
        section = report.results_section(results, raw_argv)
        markers = report.RESULTS_MARKERS
    print()
    print(section)
    report.print_profiles(results)
    args.json.write_text(json.dumps(results, default=str))
    if not args.no_doc:
        report.write_doc(section, markers)
        print(f"wrote {report.DOC.relative_to(ROOT)}; raw results in {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
