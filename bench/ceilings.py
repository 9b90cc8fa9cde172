"""What this machine's Redis and PostgreSQL sustain on their own, for the capacity model.

- Redis: `redis-benchmark` against the benchmark's Redis (GET, SET, LPUSH, PUBLISH; 50
  connections, no pipelining): commands per second, the mean of the four.
- PostgreSQL: `pgbench -N` (the built-in "simple update" script: one UPDATE, one SELECT and one
  INSERT per transaction, every commit synchronous) in the benchmark database, 8 clients:
  committed transactions per second. Its tables are dropped afterwards.

Both tools are the servers' own (Debian's redis-tools and postgresql-client); without them the
figure is missing, not the run. Their clients share the machine's CPUs with the server, so each
figure is a floor of what the server alone would do.
"""
from __future__ import annotations

import csv
import io
import re
import shutil
import subprocess
from urllib.parse import urlsplit

from bench.stack import DB_NAME, PG_URL, REDIS_URL

REDIS_TESTS = "get,set,lpush,publish"


def redis_commands_per_second(requests: int = 100_000) -> float | None:
    """Mean requests/s of redis-benchmark's GET, SET, LPUSH and PUBLISH tests, or None."""
    if not shutil.which("redis-benchmark"):
        return None
    url = urlsplit(REDIS_URL)
    argv = ["redis-benchmark", "-h", url.hostname or "127.0.0.1", "-p", str(url.port or 6379),
            "--dbnum", "10", "-n", str(requests), "-c", "50", "-t", REDIS_TESTS, "--csv", "-q"]
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    rates = [float(row["rps"]) for row in csv.DictReader(io.StringIO(out)) if row.get("rps")]
    return sum(rates) / len(rates) if rates else None


def pg_commits_per_second(seconds: int = 10, clients: int = 8) -> float | None:
    """Transactions/s of `pgbench -N` in the benchmark database, or None."""
    if not shutil.which("pgbench"):
        return None
    url = urlsplit(PG_URL)
    connection = ["-h", url.hostname or "127.0.0.1", "-p", str(url.port or 5432), "-U", url.username or "postgres"]
    try:
        subprocess.run(["pgbench", *connection, "-i", "-s", "1", "-q", DB_NAME],
                       capture_output=True, text=True, timeout=120, check=True)
        out = subprocess.run(["pgbench", *connection, "-N", "-c", str(clients), "-j", "2", "-T", str(seconds),
                              DB_NAME], capture_output=True, text=True, timeout=seconds + 120, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    finally:
        subprocess.run(["pgbench", *connection, "-i", "-I", "d", DB_NAME], capture_output=True, timeout=60)
    match = re.search(r"^tps = ([0-9.]+)", out, re.M)
    return float(match[1]) if match else None


def pg_max_connections() -> float | None:
    """The server's `max_connections`, or None."""
    import psycopg2

    try:
        conn = psycopg2.connect(f"{PG_URL}/postgres")
    except psycopg2.OperationalError:
        return None
    try:
        with conn.cursor() as cursor:
            cursor.execute("SHOW max_connections")
            return float(cursor.fetchone()[0])
    finally:
        conn.close()


def measure() -> dict[str, float | None]:
    """Every ceiling this module measures, keyed as bench/capacity.py's `Resource.measured_key`."""
    return {"pg_max_connections": pg_max_connections(), "redis_commands_per_s": redis_commands_per_second(),
            "pg_commits_per_s": pg_commits_per_second()}
