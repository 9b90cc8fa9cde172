"""I/O-diamond throughput against the number of worker processes, and what each session costs.

    .venv/bin/python -m bench.scaling                  # 1, 2, 4, 8 workers (~6 min); rewrites the
                                                       # measured section of docs/scaling.md
    .venv/bin/python -m bench.scaling --workers 1,2 --duration 10 --no-doc     # a quick look

For each point a fresh stack: the Procfile's web server and N Junction workers (the Procfile's
`worker:` command, `-P prefork -c 1` unless told otherwise: N worker processes, as N one-core
worker hosts would be), no raw Celery fleets. C closed-loop clients run the I/O diamond of
bench/workloads.py (two `http_request`s to the local echo server, joined by a `transform`)
with `Prefer: wait` for D seconds. Counted per session, over the warm-up and measured calls:

- PostgreSQL: committed transactions and rows written (`pg_stat_database` of `junction_bench`,
  read once settled), SQL statements and transactions seen in-process (bench/querycount.py),
  and the CPU of the database's backends;
- Redis: commands (`INFO commandstats`, minus the idle polling rate), broker messages (`LPUSH`)
  and the server's CPU (`INFO cpu`; server-wide, so run it on a quiet Redis, or point
  `JUNCTION_BENCH_REDIS_URL` at a Redis of its own);
- CPU of the web server and of the workers (with their pool processes), from /proc.

bench/capacity.py turns the costs of the fastest point into the capacity model printed below the
measured tables. Same services as bench.run: database `junction_bench` (recreated), Redis dbs
10 and 11 (flushed).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import signal
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import capacity, ceilings, querycount, report  # noqa: E402
from bench.clients import drive  # noqa: E402
from bench.counters import (  # noqa: E402
    BackendCpu, PgStats, RedisStats, cpu_seconds, descendants, pg_database_stats, redis_commands, redis_cpu_seconds,
)
from bench.machine import cpu_busy, machine, other_activity  # noqa: E402
from bench.run import EchoServer, _query_counters, setup_api  # noqa: E402
from bench.stack import (  # noqa: E402
    LOG_DIR, POOLS, QUERYCOUNT_DIR, REDIS_URL, Stack, WorkerFleet, flush_redis, prepare_services, stack_env,
    web_command,
)
from bench.workloads import interactions  # noqa: E402

DOC = ROOT / "docs" / "scaling.md"
MARKERS = ("<!-- bench:scaling:start -->", "<!-- bench:scaling:end -->")
SCENARIO = "io_diamond"


class CpuWindow:
    """Machine-wide CPU busy share between `start()` and `stop()`, from /proc/stat."""

    @staticmethod
    def _sample() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        return sum(fields), fields[3] + fields[4]

    def start(self) -> None:
        self.total, self.idle = self._sample()

    def stop(self) -> float:
        total, idle = self._sample()
        return 1 - (idle - self.idle) / max(1, total - self.total)


def task_seconds(extras: list[dict[str, Any]]) -> float:
    """Median over sessions of the summed claim → record time of their tasks (worker slot time)."""
    sums = []
    for x in extras:
        spans = [end - start for start, end in x["tasks"].values() if start is not None and end is not None]
        if spans:
            sums.append(sum(spans))
    return statistics.median(sums) if sums else float("nan")


def measure_point(workers: int, args: argparse.Namespace, env: dict[str, str], echo: EchoServer) -> dict[str, Any]:
    """One fresh stack with `workers` worker processes: throughput, latency and cost per session."""
    fleet = WorkerFleet(workers, args.pool, args.concurrency)
    print(f"{workers} worker process(es) (-P {fleet.pool} -c {fleet.concurrency}) …", flush=True)
    flush_redis()
    stack = Stack(fleet, env, web_command(args.web), raw=False)
    point: dict[str, Any] = {"workers": workers, "fleet": fleet.__dict__, "loadavg_start": os.getloadavg()}
    try:
        stack.start()
        definitions = {SCENARIO: interactions(echo.url, args.io_latency_ms)[SCENARIO]}
        api_key, ids = setup_api(stack.base_url, definitions, f"scaling{workers}")
        redis_stats = RedisStats()
        redis_stats.measure_idle()
        pg = PgStats()
        pg.touched()
        pg.settled()  # the set-up's counts published: the window starts clean
        pg_before = pg_database_stats()
        queries_before = querycount.read_totals(QUERYCOUNT_DIR)
        web, workers_tree = descendants(stack.pids("web")), descendants(stack.pids("junction-worker"))
        web_cpu0, worker_cpu0 = cpu_seconds(web), cpu_seconds(workers_tree)
        redis_before, redis_cpu0, window_start = redis_commands(), redis_cpu_seconds(), time.monotonic()
        backends = BackendCpu()
        backends.start()
        machine_cpu = CpuWindow()
        machine_cpu.start()
        spec = {"side": "junction", "scenario": SCENARIO, "base_url": stack.base_url, "api_key": api_key,
                "interaction": ids[SCENARIO], "input": definitions[SCENARIO][1], "keep_times": True,
                "echo_url": echo.url, "sleep_ms": args.io_latency_ms}
        r = drive(spec, args.clients, args.duration, 1_000_000, web | workers_tree, warmup=args.warmup)
        time.sleep(3 * querycount.FLUSH_INTERVAL)
        point["machine_busy"] = machine_cpu.stop()
        point["loadavg_end"] = os.getloadavg()
        calls = max(1, r["warmup_calls"] + r["calls"])
        web_cpu, worker_cpu = cpu_seconds(web) - web_cpu0, cpu_seconds(workers_tree) - worker_cpu0
        redis_cpu = redis_cpu_seconds() - redis_cpu0
        commands = redis_stats.delta(redis_before, redis_commands(), time.monotonic() - window_start)
        pg_cpu = backends.stop()
        queries = _query_counters(queries_before, querycount.read_totals(QUERYCOUNT_DIR), calls)
        stack.check_alive()
        pg.touched()
        pg.settled()
        pg_after = pg_database_stats()
        written = sum(pg_after[k] - pg_before[k] for k in ("tup_inserted", "tup_updated", "tup_deleted"))
        point.update(
            calls=calls, count=r["count"], per_min=r["per_min"], error_count=r["error_count"], errors=r["errors"],
            p50_ms=report.pct(r["latencies"], 50) * 1000, p99_ms=report.pct(r["latencies"], 99) * 1000,
            cost={
                "pg_commits": (pg_after["xact_commit"] - pg_before["xact_commit"]) / calls,
                "pg_rows_written": written / calls,
                "pg_rows": {k: (pg_after[k] - pg_before[k]) / calls
                            for k in ("tup_inserted", "tup_updated", "tup_deleted")},
                "sql_statements": queries["statements"],
                "web_statements": queries["web_statements"],
                "worker_statements": queries["worker_statements"],
                "transactions_counted": queries["transactions_counted"],
                "worker_tasks": queries["worker_tasks"],
                "redis_commands": sum(commands.values()) / calls,
                "broker_messages": commands.get("lpush", 0.0) / calls,
                "redis_top": {k: v / calls for k, v in sorted(commands.items(), key=lambda kv: -kv[1])[:10]},
                "web_cpu_ms": web_cpu * 1000 / calls,
                "worker_cpu_ms": worker_cpu * 1000 / calls,
                "pg_cpu_ms": pg_cpu * 1000 / calls,
                "redis_cpu_ms": redis_cpu * 1000 / calls,
                "task_seconds": task_seconds(r["extras"]),
            },
            status="ok" if not r["error_count"] else f"{r['error_count']} failed calls",
        )
        c = point["cost"]
        print(f"  {workers} workers: {r['per_min']:,.0f}/min p50 {point['p50_ms']:.0f} ms p99 {point['p99_ms']:.0f} ms; "
              f"per session PG commits {c['pg_commits']:.1f}, rows {c['pg_rows_written']:.1f}, "
              f"Redis {c['redis_commands']:.1f} cmds, {c['broker_messages']:.1f} msgs; CPU ms web "
              f"{c['web_cpu_ms']:.1f} workers {c['worker_cpu_ms']:.1f} PG {c['pg_cpu_ms']:.1f} Redis "
              f"{c['redis_cpu_ms']:.1f}; machine busy {point['machine_busy']:.0%}, load "
              f"{point['loadavg_end'][0]:.2f}; errors {r['error_count']}", flush=True)
    except Exception as exc:  # a point that cannot run is a row of the table, not the end of the run
        point["status"] = f"failed: {type(exc).__name__}: {exc}"[:300]
        print(f"  {point['status']}", flush=True)
    finally:
        stack.stop()
    return point


def run(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {"machine": machine(), "params": {k: v for k, v in vars(args).items() if k != "json"},
                               "points": [], "redis_url": REDIS_URL}
    own = {os.getpid()}
    results["others_before"] = other_activity(own)
    results["busy_before"] = cpu_busy(2.0)
    results["loadavg_before"] = os.getloadavg()
    print(f"machine busy before start: {results['busy_before']:.0%}, load average "
          f"{results['loadavg_before'][0]:.2f}; other stacks/tests: {len(results['others_before'])}", flush=True)
    env = stack_env(dict(kv.split("=", 1) for kv in args.env), querycount=True)
    print("preparing database and Redis …", flush=True)
    prepare_services(env)
    if not args.no_ceilings:
        print("measuring what Redis (redis-benchmark) and PostgreSQL (pgbench -N) sustain alone …", flush=True)
        results["ceilings"] = ceilings.measure()
        print(f"  {results['ceilings']}", flush=True)
    echo = EchoServer(args.http_processes)
    results["echo"] = {"processes": echo.processes, "ceiling_rps": echo.ceiling}
    try:
        for workers in args.workers:
            results["points"].append(measure_point(workers, args, env, echo))
            results["others_after"] = other_activity(own | {e.pid for e in echo.procs})
    finally:
        echo.stop()
    results["busy_after"] = cpu_busy(2.0)
    return results


# --- the doc section ------------------------------------------------------------------------


def _f(value: float, digits: int = 1) -> str:
    return "n/a" if value != value else f"{value:,.{digits}f}"


def section(results: dict[str, Any], argv: list[str]) -> str:
    mach, p, echo = results["machine"], results["params"], results["echo"]
    points = [x for x in results["points"] if "cost" in x]
    lb = results["loadavg_before"]
    lines = [
        MARKERS[0], "## Measured", "",
        f"Measured {mach['date']} with `python -m bench.scaling {shlex.join(argv)}`".rstrip() + ".", "",
        f"- Code: commit `{mach['commit']}`" + (" plus uncommitted changes" if mach["dirty"] else "") + ".",
        f"- Machine: {mach['nproc']} CPUs ({mach['cpu']}), {mach['memory']} RAM; Python {mach['python']}, "
        f"Celery {mach['celery']}, Django {mach['django']}; PostgreSQL and Redis ({results['redis_url']}) local. "
        "Everything — web server, workers, PostgreSQL, Redis, echo server and clients — shares these CPUs.",
        f"- Load: {p['clients']} closed-loop clients, each `POST …/run/` with `Prefer: wait=30`, "
        f"{p['warmup']} warm-up calls per client then {p['duration']:g} s measured per point; the echo server "
        f"({echo['processes']} processes, ceiling ≈ {echo['ceiling_rps']:,.0f} requests/s) answers after "
        f"{p['io_latency_ms']} ms. Web server: the Procfile's `web:`; workers: the Procfile's `worker:` with "
        f"`-P {p['pool']} -c {p['concurrency']}`, one fresh stack per point.",
        f"- Other load on the machine: CPU busy before start {results['busy_before']:.0%}, after "
        f"{results['busy_after']:.0%}; load average (1/5/15 min) before start {lb[0]:.2f} / {lb[1]:.2f} / "
        f"{lb[2]:.2f}; other test/worker processes seen: {len(results['others_before'])} before, "
        f"{len(results.get('others_after', []))} during the run"
        + (" — **the machine was shared: throughput and CPU figures are noisy**." if results["others_before"]
           or results.get("others_after") or results["busy_before"] >= 0.15 else " (quiet)."),
        "", "### Throughput", "",
        "| worker processes | pool slots | I/O diamonds/min | × 1 worker | p50 ms | p99 ms | machine CPU busy "
        "| load avg (1 min) at end | status |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    base = min(points, key=lambda x: x["workers"])["per_min"] if points else float("nan")
    for x in results["points"]:
        slots = x["workers"] * x["fleet"]["concurrency"]
        if "cost" not in x:
            lines.append(f"| {x['workers']} | {slots} | — | — | — | — | — | — | {x['status']} |")
            continue
        lines.append(f"| {x['workers']} | {slots} | {x['per_min']:,.0f} | "
                     f"{x['per_min'] / base:.2f}× | {x['p50_ms']:.0f} | {x['p99_ms']:.0f} | "
                     f"{x['machine_busy']:.0%} | {x['loadavg_end'][0]:.2f} | {x['status']} |")
    lines += [
        "", "### Cost per session", "",
        "Per session = the window's count / its calls (warm-up included). PostgreSQL commits and rows "
        "are `pg_stat_database` of `junction_bench`; statements and transactions are counted in the "
        "web and worker processes (bench/querycount.py); CPU is user + system time from /proc "
        "(PostgreSQL: the database's backends, a floor), Redis CPU from `INFO cpu`.", "",
        "| worker processes | PG commits | PG rows written (ins / upd / del) | SQL statements (web / workers) | transactions "
        "counted | worker tasks | Redis commands | broker messages | CPU ms: web / workers / PostgreSQL / Redis "
        "| worker slot time ms |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---|---:|",
    ]
    for x in points:
        c, rows = x["cost"], x["cost"]["pg_rows"]
        lines.append(
            f"| {x['workers']} | {_f(c['pg_commits'])} | {_f(c['pg_rows_written'])} ({_f(rows['tup_inserted'])} / "
            f"{_f(rows['tup_updated'])} / {_f(rows['tup_deleted'])}) | {_f(c['sql_statements'])} "
            f"({_f(c.get('web_statements', math.nan))} / {_f(c.get('worker_statements', math.nan))}) | "
            f"{_f(c['transactions_counted'])} | {_f(c['worker_tasks'], 2)} | {_f(c['redis_commands'])} | "
            f"{_f(c['broker_messages'], 2)} | {_f(c['web_cpu_ms'])} / {_f(c['worker_cpu_ms'])} / "
            f"{_f(c['pg_cpu_ms'])} / {_f(c['redis_cpu_ms'], 2)} | {_f(c['task_seconds'] * 1000)} |")
    if points:
        best = max(points, key=lambda x: x["per_min"])
        lines += ["", f"Redis commands per session at {best['workers']} worker processes: "
                  + ", ".join(f"`{k}` {v:.1f}" for k, v in best["cost"]["redis_top"].items()) + "."]
        lines += model_section(best, results.get("ceilings") or {})
    lines.append(MARKERS[1])
    return "\n".join(lines) + "\n"


def session_cost(point: dict[str, Any]) -> capacity.SessionCost:
    c = point["cost"]
    return capacity.SessionCost(**{field: c[field] for field in capacity.SessionCost.__dataclass_fields__
                                   if field in c})


def model_section(best: dict[str, Any], measured: dict[str, float | None]) -> list[str]:
    today = best["per_min"] / 60
    return [
        "", "### The model at 10×, 100× and 1,000× (extrapolated)", "",
        f"**Today's load** is the fastest point above: {best['per_min']:,.0f} I/O diamonds/min "
        f"({today:.1f}/s), everything on this one machine. Each column multiplies the measured "
        f"per-session costs of that point by the session rate (bench/capacity.py); nothing in the "
        f"columns past the first was run.", "",
        *capacity.model_lines(session_cost(best), today, measured),
    ]


def write_doc(text: str) -> None:
    report.write_doc(text, MARKERS, doc=DOC)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", default="1,2,4,8", help="comma-separated worker process counts (default 1,2,4,8)")
    parser.add_argument("--pool", choices=POOLS, default="prefork", help="the workers' pool (default prefork)")
    parser.add_argument("--concurrency", type=int, default=1, help="pool slots per worker process (default 1)")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients (default 16)")
    parser.add_argument("--duration", type=float, default=30, help="measured seconds per point (default 30)")
    parser.add_argument("--warmup", type=int, default=3, help="warm-up calls per client per point (default 3)")
    parser.add_argument("--io-latency-ms", type=int, default=10, help="the echo server's answer delay (default 10)")
    parser.add_argument("--http-processes", type=int, default=2, help="echo server processes (default 2)")
    parser.add_argument("--web", metavar="COMMAND", help="the web server's command instead of the Procfile's `web:`")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="extra environment for the web server and workers (repeatable)")
    parser.add_argument("--no-ceilings", action="store_true",
                        help="skip measuring Redis and PostgreSQL alone (redis-benchmark, pgbench)")
    parser.add_argument("--no-doc", action="store_true", help="do not rewrite docs/scaling.md")
    parser.add_argument("--json", type=Path, default=LOG_DIR / "scaling.json", help="raw results file")
    parser.add_argument("--from-json", type=Path, metavar="PATH",
                        help="run nothing: rewrite the doc section from an earlier run's raw results")
    args = parser.parse_args(argv)
    try:
        args.workers = [int(n) for n in args.workers.split(",")]
    except ValueError:
        parser.error("--workers: comma-separated integers")
    if not all(1 <= n <= 16 for n in args.workers) or not 1 <= args.concurrency <= 32:
        parser.error("--workers 1-16 each, --concurrency 1-32")
    if not 1 <= args.clients <= 64 or not 1 <= args.duration <= 600 or not 0 <= args.warmup <= 100:
        parser.error("--clients 1-64, --duration 1-600, --warmup 0-100")
    return args


def main(argv: list[str] | None = None) -> int:
    raw_argv = sys.argv[1:] if argv is None else argv
    args = parse_args(raw_argv)

    def on_term(signum, frame):  # stop the stack (process groups) on SIGTERM as on Ctrl-C
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    if args.from_json:
        results = json.loads(args.from_json.read_text())
        text = section(results, results.get("argv", []))
    else:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        results = run(args)
        results["argv"] = raw_argv
        text = section(results, raw_argv)
    print()
    print(text)
    if not args.from_json:
        args.json.write_text(json.dumps(results, default=str))
    if not args.no_doc:
        write_doc(text)
        print(f"wrote {DOC.relative_to(ROOT)}; raw results in {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
