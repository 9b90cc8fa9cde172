"""The capacity model of docs/scaling.md: per-session costs measured by bench/scaling.py, scaled.

Pure arithmetic, no I/O. `demand()` multiplies what one session costs (counted on this machine)
by a session rate; `saturation()` divides each shared, not horizontally scalable resource's
ceiling by that demand to say at what multiple of today's load it runs out. The ceilings are
assumptions about production hardware, not measurements: `CEILINGS` lists each with its reason,
and the doc prints them next to the results so a reader can redo the sums with their own.
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
class Ceiling:
    name: str
    value: float
    unit: str
    why: str


# Assumed, not measured: one production-sized instance of each shared component.
CEILINGS = {
    "redis_cores": Ceiling(
        "Redis, one instance", 1.0, "core",
        "Redis runs commands on one thread (io-threads only offload socket reads and writes), so an "
        "instance tops out at one core's worth of commands, whatever the host has; keep it below ~70 % "
        "for latency"),
    "pg_commits": Ceiling(
        "PostgreSQL primary, commits", 20_000.0, "commits/s",
        "an order of magnitude for small write transactions with synchronous_commit=on on a large "
        "NVMe-backed primary (group commit); measure yours with pgbench"),
    "pg_cores": Ceiling(
        "PostgreSQL primary, CPU", 32.0, "cores",
        "a large single primary; every write goes to it (replicas take reads only)"),
    "pg_connections": Ceiling(
        "PostgreSQL connections", 100.0, "connections",
        "PostgreSQL's default max_connections; each worker pool process and each of a web process's "
        "JUNCTION_ASGI_THREADS (8) lanes holds one (CONN_MAX_AGE=60); a few hundred is the practical "
        "most (each is a server process), so past it a pooler (PgBouncer) is needed, not a bigger number"),
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


def saturation(cost: SessionCost, today_per_s: float) -> list[dict[str, Any]]:
    """For each shared resource: the multiple of today's load at which it reaches its ceiling."""
    today = demand(cost, today_per_s)
    out = []
    for key, demand_key in (("redis_cores", "redis_cores"), ("pg_commits", "pg_commits_per_s"),
                            ("pg_cores", "pg_cores"), ("pg_connections", "pg_connections")):
        ceiling = CEILINGS[key]
        used = today[demand_key]
        out.append({"resource": ceiling.name, "ceiling": ceiling, "today": used,
                    "multiple": ceiling.value / used if used > 0 else float("inf")})
    return sorted(out, key=lambda x: x["multiple"])


def _num(value: float) -> str:
    if value != value:  # NaN
        return "n/a"
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def model_lines(cost: SessionCost, today_per_s: float) -> list[str]:
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
    lines += ["", "| shared resource | assumed ceiling | used today | runs out at |", "|---|---:|---:|---:|"]
    for s in saturation(cost, today_per_s):
        c = s["ceiling"]
        lines.append(f"| {s['resource']} | {_num(c.value)} {c.unit} | {_num(s['today'])} | "
                     f"{_num(s['multiple'])}× today |")
    lines += ["", "Assumed ceilings (not measured here):", ""]
    lines += [f"- {c.name}, {_num(c.value)} {c.unit}: {c.why}." for c in CEILINGS.values()]
    return lines
