"""What a run costs, read from outside the measured processes.

- CPU: user + system time of process trees, from /proc/<pid>/stat.
- Memory: resident (RSS) and proportional (PSS: shared pages split between the processes that
  share them, so forked pool children are not counted twice) set sizes, from /proc.
- PostgreSQL: `pg_stat_database` of the benchmark database (committed transactions, rows
  written) and the CPU of its backends (`BackendCpu`, from /proc). Its `pg_stat_database`
  figures are published by each backend at most once a second while busy and within 10 s once
  idle, so a reading is exact only 11 s after the last Junction activity (`PgStats.settled`).
- Redis: `INFO commandstats` and `INFO cpu` (server-wide: the benchmark owns the machine, or
  `JUNCTION_BENCH_REDIS_URL` names a Redis server of its own), commands minus
  the idle rate (workers polling an empty queue) measured with the stack started and nothing
  running. Broker messages are the `LPUSH` calls: kombu's Redis transport publishes every task
  message with one `LPUSH` onto the queue's list.
- SQL statements and commits per process: bench/querycount.py (in-process, see there).
"""
from __future__ import annotations

import os
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.stack import BROKER, DB_NAME, PG_URL


def descendants(pids: list[int]) -> set[int]:
    """These processes and all their descendants (alive now)."""
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


def cpu_seconds(pids: set[int]) -> float:
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


def memory_kib(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of one process in KiB; (0, 0) if it is gone."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0, 0
    values = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] in ("Rss:", "Pss:"):
            values[parts[0]] = int(parts[1])
    return values.get("Rss:", 0), values.get("Pss:", 0)


class MemorySampler:
    """Sample the process trees of named groups every `interval` s; keep the peaks."""

    def __init__(self, groups: dict[str, list[int]], interval: float = 0.5):
        self.groups = groups
        self.interval = interval
        self.peaks: dict[str, dict[str, float]] = {
            name: {"processes": 0, "rss_mib": 0.0, "pss_mib": 0.0, "largest_rss_mib": 0.0} for name in groups}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "MemorySampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            for name, roots in self.groups.items():
                sizes = [memory_kib(pid) for pid in descendants(roots)]
                peak = self.peaks[name]
                peak["processes"] = max(peak["processes"], sum(1 for rss, _ in sizes if rss))
                peak["rss_mib"] = max(peak["rss_mib"], sum(rss for rss, _ in sizes) / 1024)
                peak["pss_mib"] = max(peak["pss_mib"], sum(pss for _, pss in sizes) / 1024)
                peak["largest_rss_mib"] = max(peak["largest_rss_mib"], max((r for r, _ in sizes), default=0) / 1024)
            self._stop.wait(self.interval)


def redis_commands() -> dict[str, int]:
    """Calls per command since the Redis server started (server-wide)."""
    import redis

    stats = redis.Redis.from_url(BROKER).info("commandstats")
    return {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}


class RedisStats:
    """Redis command counts of a window, net of the idle polling rate."""

    def __init__(self) -> None:
        self.idle_rate: dict[str, float] = {}

    def measure_idle(self, windows: int = 4, seconds: float = 1.0) -> None:
        """Per command, the lowest rate over a few 1 s windows: a burst from another user of the
        server in one window does not inflate what is subtracted from every measurement."""
        rates: dict[str, float] = {}
        for i in range(windows):
            before, start = redis_commands(), time.monotonic()
            time.sleep(seconds)
            after, elapsed = redis_commands(), time.monotonic() - start
            window = {k: (after.get(k, 0) - before.get(k, 0)) / elapsed for k in after}
            rates = window if i == 0 else {k: min(v, window.get(k, 0.0)) for k, v in rates.items()}
        self.idle_rate = rates

    def delta(self, before: dict[str, int], after: dict[str, int], seconds: float) -> dict[str, float]:
        out = {}
        for name, calls in after.items():
            net = calls - before.get(name, 0) - self.idle_rate.get(name, 0.0) * seconds
            if net > 0.5:
                out[name] = net
        out.pop("info", None)  # the benchmark's own readings
        return out


def redis_cpu_seconds() -> float:
    """User + system CPU seconds the Redis server has used since it started (server-wide)."""
    import redis

    cpu = redis.Redis.from_url(BROKER).info("cpu")
    return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])


PG_DATABASE_FIELDS = ("xact_commit", "xact_rollback", "tup_inserted", "tup_updated", "tup_deleted")


def pg_database_stats() -> dict[str, int]:
    """The benchmark database's `pg_stat_database` counters (committed transactions, rows written)."""
    import psycopg2

    conn = psycopg2.connect(f"{PG_URL}/postgres")
    try:
        with conn.cursor() as cursor:
            cursor.execute(f"SELECT {', '.join(PG_DATABASE_FIELDS)} FROM pg_stat_database WHERE datname = %s",
                           [DB_NAME])
            return dict(zip(PG_DATABASE_FIELDS, (int(v) for v in cursor.fetchone()), strict=True))
    finally:
        conn.close()


def pg_backend_pids() -> list[int]:
    """Server process ids of the connections to the benchmark database (PostgreSQL on this host)."""
    import psycopg2

    conn = psycopg2.connect(f"{PG_URL}/postgres")
    try:
        with conn.cursor() as cursor:
            cursor.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", [DB_NAME])
            return [int(row[0]) for row in cursor.fetchall()]
    finally:
        conn.close()


class BackendCpu:
    """CPU seconds used by the benchmark database's PostgreSQL backends between `start()` and `stop()`.

    Backends are found in `pg_stat_activity` at both ends (Junction keeps its connections for
    `CONN_MAX_AGE`, so they live through a window); a backend that came and went in between is
    missed, which makes the figure a floor.
    """

    def __init__(self) -> None:
        self.before: dict[int, float] = {}

    def start(self) -> None:
        self.before = {pid: cpu_seconds({pid}) for pid in pg_backend_pids()}

    def stop(self) -> float:
        return sum(cpu_seconds({pid}) - self.before.get(pid, 0.0) for pid in pg_backend_pids())


def pg_commits() -> int:
    import psycopg2

    conn = psycopg2.connect(f"{PG_URL}/postgres")
    try:
        with conn.cursor() as cursor:
            cursor.execute("SELECT xact_commit FROM pg_stat_database WHERE datname = %s", [DB_NAME])
            return int(cursor.fetchone()[0])
    finally:
        conn.close()


def tasks_run_by_workers(since: datetime, until: datetime) -> int:
    """Task records that Celery workers ran (delivered to them, or fused into their steps) in the
    sessions created between `since` and `until`: `TaskRun.worker` names the worker node, where a
    task the call ran says `api@…`."""
    import psycopg2

    conn = psycopg2.connect(f"{PG_URL}/{DB_NAME}")
    try:
        with conn.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM interactions_taskrun t JOIN interactions_session s ON s.id = t.session_id "
                "WHERE s.created_at >= %s AND s.created_at < %s AND t.worker <> '' AND t.worker NOT LIKE 'api@%%'",
                [since, until])
            return int(cursor.fetchone()[0])
    finally:
        conn.close()


class PgStats:
    """Settled readings of committed transactions in the benchmark database.

    `touched()` marks Junction activity; `settled()` waits until 11 s after the last mark (the
    time every PostgreSQL backend takes to publish its counts) and then reads.
    """

    SETTLE_SECONDS = 11.0

    def __init__(self) -> None:
        self.last_activity = time.monotonic()

    def touched(self) -> None:
        self.last_activity = time.monotonic()

    def settled(self) -> int | None:
        """The reading, or None when PostgreSQL refused a connection for 20 s (a shared server
        at max_connections): a missing figure, not a failed run."""
        import psycopg2

        wait = self.last_activity + self.SETTLE_SECONDS - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        for _ in range(5):
            try:
                return pg_commits()
            except psycopg2.OperationalError as exc:
                error = exc
                time.sleep(4)
        print(f"  (no pg_stat_database reading: {str(error).strip()})", flush=True)
        return None
