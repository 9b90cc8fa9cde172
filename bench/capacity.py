"""The capacity model of docs/scaling.md: per-session costs measured by bench/scaling.py, scaled.

Pure arithmetic, no I/O. `demand()` multiplies what one session costs (counted on this machine)
by a session rate; `saturation()` divides each shared, not horizontally scalable resource's
ceiling by that demand to say at what multiple of today's load it runs out: once with what this
machine's Redis and PostgreSQL were measured to sustain (bench/ceilings.py), once with
production ceilings that are assumptions, not measurements: `RESOURCES` lists each with its
reason, and the doc prints them next to the results so a reader can redo the sums with their own.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MULTIPLES = (1, 10, 100, 1000)


@dataclass(frozen=True)
class SessionCost:
    """What one session costs, as measured (per session, warm-up calls included)."""
    pg_commits: float
    pg_rows_written: float
    sql_statements: float
    redis_commands: float
    broker_messages: float
    web_cpu_ms: float
    worker_cpu_ms: float
    pg_cpu_ms: float
    redis_cpu_ms: float
    task_seconds: float  # worker slot time: sum over the session's tasks of claim → record
    http_requests: float = 1.0  # `POST …/run/` with `Prefer: wait`: the answer comes on the same request


@dataclass(frozen=True)
class Resource:
    """A component every host shares, the demand key that uses it, and its assumed production ceiling."""
    name: str
    demand_key: str
    unit: str
    production: float
    why: str
    measured_key: str | None = None  # the key of this machine's measured ceiling (bench/ceilings.py), if any


# In the order the doc discusses them. Production ceilings are assumptions, not measurements.
RESOURCES = (
    Resource("PostgreSQL connections, no pooler", "pg_connections", "connections", 100.0,
             "PostgreSQL's default max_connections; each worker pool process and each of a web process's "
             "JUNCTION_ASGI_THREADS (8) lanes holds one (CONN_MAX_AGE=60); a few hundred is the practical "
             "most (each is a server process), so past it a pooler (PgBouncer) is needed, not a bigger number",
             "pg_max_connections"),
    Resource("Redis commands, one instance", "redis_commands_per_s", "commands/s", 100_000.0,
             "Redis executes commands on one thread; small commands without pipelining reach about "
             "100,000/s on one server core (redis-benchmark on dedicated hardware); keep below ~70 % for latency",
             "redis_commands_per_s"),
    Resource("Redis CPU, one instance", "redis_cores", "core", 1.0,
             "one thread executes commands (io-threads only offload socket reads and writes). CPU per command "
             "measured at low load overstates the cost at saturation, where Redis handles many commands per "
             "wake-up: read this row as a pessimistic bound next to the commands row"),
    Resource("PostgreSQL primary, commits", "pg_commits_per_s", "commits/s", 20_000.0,
             "an order of magnitude for small write transactions on a large NVMe-backed primary with group "
             "commit; only about a quarter of Junction's commits wait for the WAL flush (synchronous_commit per "
             "statement, docs/execution.md), so this is conservative; measure yours with pgbench",
             "pg_commits_per_s"),
    Resource("PostgreSQL primary, CPU", "pg_cores", "cores", 32.0,
             "a large single primary: every write goes to it (replicas take reads only); the per-session "
             "figure is a floor (backends that came and went are missed)"),
)
MEASURED_HOW = {
    "pg_max_connections": "`SHOW max_connections`",
    "redis_commands_per_s": "redis-benchmark",
    "pg_commits_per_s": "pgbench -N",
}


def demand(cost: SessionCost, sessions_per_s: float, *, asgi_threads: float = 8.0) -> dict[str, float]:
    """What `sessions_per_s` sessions a second ask of each component (Little's law for slots).

    PostgreSQL connections: one per busy worker slot, plus `asgi_threads` (JUNCTION_ASGI_THREADS,
    each a lane with its own connection) per web process, one web process per core it burns.
    """
    web_cores = sessions_per_s * cost.web_cpu_ms / 1000
    worker_cores = sessions_per_s * cost.worker_cpu_ms / 1000
    # A prefork slot is busy for a task's whole claim → record time, I/O wait included, so the
    # fleet needs at least that many slots busy at once; at least one per core it burns.
    worker_slots = max(sessions_per_s * cost.task_seconds, worker_cores)
    return {
        "sessions_per_s": sessions_per_s,
        "http_requests_per_s": sessions_per_s * cost.http_requests,
        "web_cores": web_cores,
        "worker_cores": worker_cores,
        "worker_slots": worker_slots,
        "pg_commits_per_s": sessions_per_s * cost.pg_commits,
        "pg_rows_per_s": sessions_per_s * cost.pg_rows_written,
        "pg_cores": sessions_per_s * cost.pg_cpu_ms / 1000,
        "pg_connections": worker_slots + web_cores * asgi_threads,
        "redis_commands_per_s": sessions_per_s * cost.redis_commands,
        "redis_cores": sessions_per_s * cost.redis_cpu_ms / 1000,
        "broker_messages_per_s": sessions_per_s * cost.broker_messages,
    }


def saturation(cost: SessionCost, today_per_s: float,
               measured: dict[str, float | None] | None = None) -> list[dict[str, Any]]:
    """For each shared resource: today's use and the multiple of today's load that reaches its
    ceiling, on this machine (where measured) and in production (assumed); earliest first."""
    today = demand(cost, today_per_s)
    measured = measured or {}
    out = []
    for resource in RESOURCES:
        used = today[resource.demand_key]
        here = measured.get(resource.measured_key) if resource.measured_key else None
        out.append({"resource": resource, "today": used, "here": here,
                    "multiple_here": here / used if here and used > 0 else float("nan"),
                    "multiple": resource.production / used if used > 0 else float("inf")})
    return sorted(out, key=lambda x: x["multiple"])


def _num(value: float) -> str:
    if value != value:  # NaN
        return "n/a"
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def model_lines(cost: SessionCost, today_per_s: float, measured: dict[str, float | None] | None = None) -> list[str]:
    """Markdown: the demand table at each multiple and where each shared resource saturates."""
    rows = {k: demand(cost, today_per_s * k) for k in MULTIPLES}
    labels = (
        ("sessions_per_s", "sessions/s"),
        ("http_requests_per_s", "API requests/s"),
        ("web_cores", "API CPU, cores (scales out: more web hosts)"),
        ("worker_cores", "worker CPU, cores (scales out: more worker hosts)"),
        ("worker_slots", "busy worker slots (prefork processes), at least"),
        ("pg_commits_per_s", "PostgreSQL commits/s (one primary)"),
        ("pg_rows_per_s", "PostgreSQL rows written/s"),
        ("pg_cores", "PostgreSQL backend CPU, cores (a floor)"),
        ("pg_connections", "PostgreSQL connections without a pooler, at least"),
        ("redis_commands_per_s", "Redis commands/s"),
        ("redis_cores", "Redis CPU, cores (one instance: ≤ 1)"),
        ("broker_messages_per_s", "broker messages/s"),
    )
    lines = ["| demand | " + " | ".join(f"{k:,}× today" for k in MULTIPLES) + " |",
             "|---|" + "---:|" * len(MULTIPLES)]
    for key, label in labels:
        lines.append(f"| {label} | " + " | ".join(_num(rows[k][key]) for k in MULTIPLES) + " |")
    lines += ["", "| shared resource | today | ceiling on this machine (measured by) | runs out here at "
              "| production ceiling (assumed) | runs out in production at |", "|---|---:|---:|---:|---:|---:|"]
    for s in saturation(cost, today_per_s, measured):
        r = s["resource"]
        here = (f"{_num(s['here'])} ({MEASURED_HOW[r.measured_key]})" if s["here"] else "—")
        lines.append(f"| {r.name} | {_num(s['today'])} {r.unit} | {here} | "
                     f"{_num(s['multiple_here']) + '× today' if s['here'] else '—'} | {_num(r.production)} {r.unit} | "
                     f"{_num(s['multiple'])}× today |")
    lines += ["", "Production ceilings (assumed, not measured here):", ""]
    lines += [f"- {r.name}, {_num(r.production)} {r.unit}: {r.why}." for r in RESOURCES]
    return lines
