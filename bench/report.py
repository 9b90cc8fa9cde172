"""Turn a run's figures into the tables of docs/benchmarks.md (between its markers)."""
from __future__ import annotations

import math
import re
import shlex
import statistics
from pathlib import Path
from typing import Any, Callable

from bench.stack import ROOT

DOC = ROOT / "docs" / "benchmarks.md"
RESULTS_MARKERS = ("<!-- bench:results:start -->", "<!-- bench:results:end -->")
POOLS_MARKERS = ("<!-- bench:pools:start -->", "<!-- bench:pools:end -->")
RAWS = ("raw-default", "raw-junction")


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (0-100), linear interpolation; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def median(r: dict[str, Any]) -> float:
    return statistics.median(r["latencies"]) if r["latencies"] else float("nan")


# --- targets (issue 8, item 6) --------------------------------------------------------------

class Target:
    """A goal for one figure: absolute (`limit`) or relative to raw Celery (`ratio`, `plus`)."""

    def __init__(self, text: str, *, at_most: bool, limit: float | None = None,
                 ratio: float | None = None, plus: float | None = None):
        self.text, self.at_most, self.limit, self.ratio, self.plus = text, at_most, limit, ratio, plus

    def met(self, junction: float, raw: float) -> bool | None:
        if math.isnan(junction) or (self.limit is None and math.isnan(raw)):
            return None
        bound = self.limit if self.limit is not None else raw * (self.ratio or 1.0) + (self.plus or 0.0)
        return junction <= bound if self.at_most else junction >= bound

    @property
    def relative(self) -> bool:
        return self.limit is None


def verdict(target: Target | None, junction: float, raws: tuple[float, float]) -> str:
    if target is None:
        return "—"
    if not target.relative:
        ok = target.met(junction, float("nan"))
        return "n/a" if ok is None else ("met" if ok else "missed")
    oks = [target.met(junction, raw) for raw in raws]
    if None in oks:
        return "n/a"
    if all(oks):
        return "met"
    if any(oks):
        return "met vs " + ("default" if oks[0] else "Junction-delivery") + " raw only"
    return "missed"


def _rows(m: dict[str, Any], p: dict[str, Any]) -> list[dict[str, Any]]:
    c, latency = p["clients"], p["io_latency_ms"]
    rows: list[dict[str, Any]] = []

    def row(key: str, metric: str, unit: str, fn: Callable[[dict], float], target: Target | None = None):
        if key not in m:
            return
        j = fn(m[key]["junction"])
        raws = tuple(fn(m[key][side]) for side in RAWS)
        rows.append({"metric": metric, "unit": unit, "junction": j, "raws": raws,
                     "target": target.text if target else "—", "verdict": verdict(target, j, raws)})

    throughput = lambda x: x["per_min"]  # noqa: E731
    p50 = lambda x: pct(x["latencies"], 50) * 1000  # noqa: E731
    p99 = lambda x: pct(x["latencies"], 99) * 1000  # noqa: E731
    cpu = lambda x: x["server_cpu_ms"]  # noqa: E731
    row("diamond_load", f"pure diamond throughput, {c} clients", "sessions/min", throughput,
        Target("≥ 2× raw", at_most=False, ratio=2.0))
    row("diamond_load", f"pure diamond p50, {c} clients", "ms", p50)
    row("diamond_load", f"pure diamond server CPU per session, {c} clients", "ms", cpu)
    row("diamond_alone", "pure diamond `Prefer: wait` p50, 1 client", "ms", p50,
        Target("≤ 10 ms", at_most=True, limit=10))
    row("diamond_alone", "pure diamond p99, 1 client", "ms", p99)
    row("chain20", "pure chain of 20: per task (median session / 20)", "ms", lambda x: median(x) / 20 * 1000,
        Target("≤ 1 ms", at_most=True, limit=1.0))
    row("fanout50", "pure fan-out 1 → 50 → 1: session (median)", "ms", lambda x: median(x) * 1000)
    row("io_diamond_load", f"I/O diamond throughput, {c} clients", "sessions/min", throughput,
        Target("≥ 1.0× raw", at_most=False, ratio=1.0))
    row("io_diamond_load", f"I/O diamond p50, {c} clients", "ms", p50)
    row("io_diamond_load", f"I/O diamond server CPU per session, {c} clients", "ms", cpu)
    row("io_diamond_alone", "I/O diamond p50, 1 client", "ms", p50, Target("≤ raw + 5 ms", at_most=True, plus=5.0))
    row("io_diamond_alone", "I/O diamond p99, 1 client", "ms", p99)
    row("io_chain20", f"I/O chain of 20: per-task overhead (median session / 20 − {latency} ms)", "ms",
        lambda x: median(x) / 20 * 1000 - latency, Target("≤ 1.2× raw", at_most=True, ratio=1.2))
    row("io_fanout50", "I/O fan-out 1 → 50 → 1: session (median)", "ms", lambda x: median(x) * 1000,
        Target("≤ 1.2× raw", at_most=True, ratio=1.2))
    row("delay", "two parallel 1 s delays → join: session (median)", "s", median,
        Target("≤ 1.03 s", at_most=True, limit=1.03))
    _per_worker_task_rows(m, rows)
    return rows


def _per_worker_task_rows(m: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    """The targets are judged per task a worker runs (delivered or fused into a step); the same
    counts per delivered message are shown beside them, without a verdict."""
    for field, metric, judged in (
        ("statements_per_task_run", "SQL statements per worker task (delivered or fused)", True),
        ("commits_per_task_run", "commits per worker task (delivered or fused)", True),
        ("statements_per_worker_task", "SQL statements per delivered message", False),
        ("commits_per_worker_task", "commits per delivered message", False),
    ):
        values = {key: sides["junction"].get("counters", {}).get(field, float("nan")) for key, sides in m.items()}
        values = {k: v for k, v in values.items() if not math.isnan(v)}
        if not values:
            continue
        worst = max(values, key=values.get)
        j = values[worst]
        rows.append({"metric": f"{metric} (worst scenario: {worst})", "unit": "", "junction": j,
                     "raws": (float("nan"), float("nan")), "target": "≤ 2" if judged else "—",
                     "verdict": ("met" if j <= 2 else "missed") if judged else "—"})


def _fmt(value: float, unit: str = "") -> str:
    if value != value:  # NaN
        return "n/a"
    if math.isinf(value):
        return "∞"
    if unit == "s":
        return f"{value:.3f}"
    if unit == "sessions/min":
        return f"{value:,.0f}"
    return f"{value:.1f}" if abs(value) >= 10 or unit == "ms" else f"{value:.2f}"


def _ratio(j: float, raw: float) -> str:
    return "n/a" if not raw or raw != raw or j != j else f"{j / raw:.2f}×"


def targets_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = ["| metric | unit | Junction | raw default | J / raw default | raw J-delivery | J / raw J-delivery "
             "| target | verdict |",
             "|---|---|---:|---:|---:|---:|---:|---|---|"]
    for x in rows:
        (rd, rj), u = x["raws"], x["unit"]
        lines.append(f"| {x['metric']} | {u} | {_fmt(x['junction'], u)} | {_fmt(rd, u)} | {_ratio(x['junction'], rd)} "
                     f"| {_fmt(rj, u)} | {_ratio(x['junction'], rj)} | {x['target']} | {x['verdict']} |")
    return lines


MEASUREMENT_TITLES = {
    "diamond_load": "pure diamond, {c} clients", "diamond_alone": "pure diamond, 1 client",
    "chain20": "pure chain of 20", "fanout50": "pure fan-out 1 → 50 → 1",
    "io_diamond_load": "I/O diamond, {c} clients", "io_diamond_alone": "I/O diamond, 1 client",
    "io_chain20": "I/O chain of 20", "io_fanout50": "I/O fan-out 1 → 50 → 1",
    "delay": "parallel delays",
}


def counters_table(m: dict[str, Any], clients: int) -> list[str]:
    lines = ["| scenario | CPU ms J / raw def / raw JD | PG commits (pg_stat) | SQL statements | "
             "transactions counted | worker tasks: messages / run | SQL / worker task: message / run | "
             "commits / worker task: message / run | "
             "Redis commands J / raw def / raw JD | broker messages J / raw def / raw JD |",
             "|---|---|---:|---:|---:|---:|---:|---:|---|---|"]
    for key, sides in m.items():
        j = sides["junction"].get("counters", {})

        def three(fn: Callable[[dict], float], sides: dict[str, Any] = sides) -> str:
            return " / ".join(_fmt(fn(sides[s])) for s in ("junction", *RAWS))

        lines.append(
            f"| {MEASUREMENT_TITLES.get(key, key).format(c=clients)} | {three(lambda x: x['server_cpu_ms'])} "
            f"| {_fmt(j.get('pg_commits', math.nan))} | {_fmt(j.get('statements', math.nan))} "
            f"| {_fmt(j.get('transactions_counted', math.nan))} "
            f"| {_pair(j, 'worker_tasks', 'tasks_run_by_workers')} "
            f"| {_pair(j, 'statements_per_worker_task', 'statements_per_task_run')} "
            f"| {_pair(j, 'commits_per_worker_task', 'commits_per_task_run')} "
            f"| {three(lambda x: x.get('counters', {}).get('redis_commands', math.nan))} "
            f"| {three(lambda x: x.get('counters', {}).get('broker_messages', math.nan))} |")
    return lines


def _pair(counters: dict[str, Any], per_message: str, per_run: str) -> str:
    return f"{_fmt(counters.get(per_message, math.nan))} / {_fmt(counters.get(per_run, math.nan))}"


def redis_breakdown(m: dict[str, Any]) -> list[str]:
    """The commands behind the Redis column for the 1-client diamonds."""
    lines = []
    for key in ("diamond_alone", "io_diamond_alone"):
        if key not in m:
            continue
        for side in ("junction", *RAWS):
            top = m[key][side].get("counters", {}).get("redis_top", {})
            if top:
                lines.append(f"- {MEASUREMENT_TITLES[key]}, {side}: "
                             + ", ".join(f"`{k}` {v:.1f}" for k, v in top.items()) + ".")
    return lines


def crowd_lines(crowd: dict[str, Any] | None) -> list[str]:
    if not crowd:
        return ["The waiting crowd was not run (`--skip-crowd`)."]
    mem = crowd["memory"]
    all_answered = crowd["answered_in_time"] == crowd["callers"]

    def group(name: str) -> str:
        g = mem.get(name, {})
        return (f"{g.get('processes', 0)} processes, peak RSS {g.get('rss_mib', 0):,.0f} MiB "
                f"(PSS {g.get('pss_mib', 0):,.0f} MiB, largest process {g.get('largest_rss_mib', 0):,.0f} MiB)")

    return [
        "| figure | value | target | verdict |", "|---|---|---|---|",
        f"| callers answered (200, session completed) within 11 s of their own call | "
        f"{crowd['answered_in_time']:,} of {crowd['callers']:,} | all | {'met' if all_answered else 'missed'} |",
        f"| answer time − {crowd.get('delay', 10):g} s, p50 | {_fmt(crowd['excess_p50'], 's')} s | — | — |",
        f"| answer time − {crowd.get('delay', 10):g} s, p99 | {_fmt(crowd['excess_p99'], 's')} s | — | — |",
        f"| responses by status | {', '.join(f'{k}: {v}' for k, v in sorted(crowd['statuses'].items()))} | — | — |",
        f"| web server | {group('web')} | — | — |",
        f"| Junction workers | {group('workers')} | — | — |",
        f"| CPU of web server + workers during the crowd | {crowd['server_cpu_s']:.1f} s | — | — |",
    ] + ([f"\nErrors seen: {'; '.join(crowd['errors'])}"] if crowd.get("errors") else [])


def phase_breakdown(extras: list[dict[str, Any]], first: list[str], last: str) -> dict[str, float]:
    """Median ms of each stage of a session, from the client's clock and Junction's records."""
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
            body = statistics.mean(end - start for start, end in tasks.values())
            values = (x["created"] - x["sent"], roots_start - x["created"], body, sink_start - roots_end,
                      x["finished"] - sink_end, x["received"] - x["finished"], x["received"] - x["sent"])
        except (KeyError, TypeError, ValueError):
            continue
        for stage, value in zip(stages, values, strict=True):
            stages[stage].append(value)
    return {k: statistics.median(v) * 1000 for k, v in stages.items() if v}


def results_section(results: dict[str, Any], argv: list[str]) -> str:
    m, p, mach = results["measurements"], results["params"], results["machine"]
    fleet, echo = results["fleet"], results["echo"]
    raw_default = results.get("raw_default_fleet") or fleet
    idle = not results["others_before"] and not results.get("others_after") and results["busy_before"] < 0.15
    rows = _rows(m, p)
    lines = [
        RESULTS_MARKERS[0], "## Results", "",
        f"Measured {mach['date']} with `python -m bench.run {shlex.join(argv)}`".rstrip() + ".", "",
        f"- Code: commit `{mach['commit']}`" + (" plus uncommitted changes to " + ", ".join(
            sorted({line[3:] for line in mach["dirty"].splitlines()})) if mach["dirty"] else "") + ".",
        f"- Machine: {mach['nproc']} CPUs ({mach['cpu']}), {mach['memory']} RAM; Python {mach['python']}, "
        f"Celery {mach['celery']}, Django {mach['django']}; PostgreSQL and Redis local.",
        f"- Web server: `{results.get('web_command', '?')}` ({results.get('web_source', '?')}). Workers: "
        f"{fleet['processes']} Junction and {fleet['processes']} raw with Junction's delivery settings, each "
        f"`-P {fleet['pool']} -c {fleet['concurrency']}`; {fleet['processes']} raw with Celery's defaults, each "
        f"`-P {raw_default['pool']} -c {raw_default['concurrency']}`.",
        f"- Loads: {p['clients']} clients for {p['throughput_seconds']} s per side; {p['alone_runs']} runs "
        f"of each diamond alone, {p['chain_runs']} chain runs, {p['fanout_runs']} fan-out runs, "
        f"{p['delay_runs']} delay runs; {p['warmup']} warm-up calls per client before each. I/O: the echo "
        f"server ({echo['processes']} processes, ceiling ≈ {echo['ceiling_rps']:,.0f} requests/s) answers "
        f"after {p['io_latency_ms']} ms.",
        f"- Machine otherwise idle: {'yes' if idle else 'no'} (CPU busy before start {results['busy_before']:.0%}, "
        f"after stop {results['busy_after']:.0%}; other test/worker processes seen: "
        f"{len(results['others_before'])} before, {len(results.get('others_after', []))} during the run).",
        "", "### Targets (issue 8)", "", *targets_table(rows), "",
    ]
    errors = {f"{k}/{s}": m[k][s]["error_count"] for k in m for s in m[k] if m[k][s]["error_count"]}
    examples = [e for k in m for s in m[k] for e in m[k][s]["errors"]][:3]
    lines.append(f"Failed calls: {errors or 'none'}." + (f" E.g. {'; '.join(examples)}" if examples else ""))
    lines += ["", "### Cost per session", "",
              "PostgreSQL figures are Junction's (raw Celery does not use it); per session = the window's "
              "count / the calls in it (warm-up included).", "", *counters_table(m, p["clients"]), ""]
    lines += redis_breakdown(m)
    lines += ["", f"### The waiting crowd ({p['crowd']:,} callers at {p['crowd_rate']:g}/s, "
              f"`Prefer: wait=30`, one 10 s `delay` each)", "", *crowd_lines(results.get("crowd"))]
    for key, first, last in (("diamond_alone", ["a", "b"], "c"), ("io_diamond_alone", ["a", "b"], "c")):
        stages = phase_breakdown(m.get(key, {}).get("junction", {}).get("extras", []), first, last)
        if stages:
            lines += ["", f"Where a Junction session's time goes ({MEASUREMENT_TITLES[key]}; medians from the "
                          "session's recorded timestamps and the client's clock):", "", "| stage | ms |", "|---|---:|"]
            lines += [f"| {k} | {v:.1f} |" for k, v in stages.items()]
    lines.append(RESULTS_MARKERS[1])
    return "\n".join(lines) + "\n"


POOL_COLUMNS = ("pool", "workers", "I/O diamond /min, J (× raw def, × raw JD)",
                "I/O diamond p50 1 client, J / raw def ms",
                "I/O chain per-task overhead, J / raw def ms", "I/O fan-out, J / raw def ms",
                "server CPU ms per I/O diamond (web + workers)", "workers' peak RSS (PSS) MiB", "status")


def pools_section(results: dict[str, Any], argv: list[str]) -> str:
    p, mach = results["params"], results["machine"]
    lines = [POOLS_MARKERS[0], "## Worker pools (I/O workloads)", "",
             f"Measured {mach['date']} with `python -m bench.run {shlex.join(argv)}` (commit `{mach['commit']}`): "
             f"Junction's workers and both raw fleets on the pool of the row; echo server latency "
             f"{p['io_latency_ms']} ms; {p['clients']} clients for {p['throughput_seconds']} s of I/O diamond load.",
             "", "| " + " | ".join(POOL_COLUMNS) + " |", "|" + "---|" * len(POOL_COLUMNS)]
    for outcome in results["pools"]:
        f = outcome["fleet"]
        cells = _pool_cells(outcome, p["io_latency_ms"])
        status = outcome["status"].replace("|", "/").replace("\n", " ")  # a log excerpt must not split the row
        lines.append(f"| {f['pool']} | {f['processes']} × -c {f['concurrency']} | " + " | ".join(cells)
                     + f" | {status} |")
    lines.append(POOLS_MARKERS[1])
    return "\n".join(lines) + "\n"


def _pool_cells(outcome: dict[str, Any], latency: int) -> list[str]:
    m = outcome["measurements"]
    keys = ("io_diamond_load", "io_diamond_alone", "io_chain20", "io_fanout50")
    if not all(k in m for k in keys):
        return ["—"] * 6
    load, alone, chain, fan = (m[k] for k in keys)
    j, rd, rj = (load[s]["per_min"] for s in ("junction", *RAWS))
    mem = outcome.get("memory", {})

    sides = ("junction", "raw-default")
    return [
        f"{j:,.0f} ({_ratio(j, rd)}, {_ratio(j, rj)})",
        " / ".join(f"{pct(alone[s]['latencies'], 50) * 1000:.1f}" for s in sides),
        " / ".join(f"{median(chain[s]) / 20 * 1000 - latency:.1f}" for s in sides),
        " / ".join(f"{median(fan[s]) * 1000:.0f}" for s in sides),
        f"{load['junction']['server_cpu_ms']:.1f}",
        f"{mem.get('rss_mib', 0):,.0f} ({mem.get('pss_mib', 0):,.0f})",
    ]


def print_profiles(results: dict[str, Any]) -> None:
    measurements = results.get("measurements", {})
    prof = next((m["junction"]["profile"] for m in measurements.values()
                 if isinstance(m, dict) and m.get("junction", {}).get("profile")), None)
    for group, summary in (prof or {}).items():
        print(f"\nprofile, {group} ({summary['samples']} samples; share in celery main processes "
              f"{summary['main_process_share']:.0%}): project functions, inclusive share")
        for name, share in summary["inclusive"][:15]:
            print(f"  {share:6.1%}  {name}")
        print(f"profile, {group}: top leaf frames")
        for name, share in summary["self"][:15]:
            print(f"  {share:6.1%}  {name}")


def write_doc(section: str, markers: tuple[str, str], doc: Path = DOC) -> None:
    """Replace the text between `markers` in `doc` (append the section if absent)."""
    text = doc.read_text() if doc.exists() else "# Benchmarks\n"
    pattern = re.compile(re.escape(markers[0]) + ".*?" + re.escape(markers[1]) + r"\n?", re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    doc.write_text(text)
