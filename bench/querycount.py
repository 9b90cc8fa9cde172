"""Count the SQL statements and commits of a Junction process, for the benchmark only.

Installed by `bench/settings.py` (the stack runs with `DJANGO_SETTINGS_MODULE=bench.settings`,
which is `config.settings` plus this); Junction's own code is not touched. What is counted, per
process:

- `statements`: every SQL statement sent through a Django cursor (ORM and raw SQL alike, via
  `connection.execute_wrappers`; an `executemany` counts one per parameter set). Not counted:
  the implicit `BEGIN` psycopg2 sends before the first statement of a transaction, the
  connection's set-up queries, and anything that bypasses Django's connection.
- `autocommit_statements`: those of them run outside a transaction block — each is its own
  PostgreSQL transaction;
- `commits` / `rollbacks`: explicit ends of transaction blocks (`connection.commit()` /
  `rollback()`, which is what `transaction.atomic` calls);
- `tasks`: Celery tasks this process ran (`task_postrun`), in worker processes.

Transactions = autocommit statements + commits. Each process writes its totals as JSON to
`$JUNCTION_BENCH_QUERYCOUNT_DIR/<pid>.json` at most every 0.2 s from a daemon thread (so a
forked pool child starts its own file); the benchmark sums the files before and after a run.
"""
from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

FLUSH_INTERVAL = 0.2
FIELDS = ("statements", "autocommit_statements", "commits", "rollbacks", "tasks")


class _Counts:
    """This process's counters; re-created after a fork (the pid changes)."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.values = dict.fromkeys(FIELDS, 0)
        self.lock = threading.Lock()
        self.changed = False

    def add(self, field: str, n: int = 1) -> None:
        with self.lock:
            self.values[field] += n
            self.changed = True


_counts: _Counts | None = None
_role = os.environ.get("JUNCTION_BENCH_ROLE", "other")
_directory = Path(os.environ.get("JUNCTION_BENCH_QUERYCOUNT_DIR", "/tmp/junction-bench/querycount"))


def _current() -> _Counts:
    global _counts
    if _counts is None or _counts.pid != os.getpid():
        _counts = _Counts()
        threading.Thread(target=_flush_forever, args=(_counts,), daemon=True,
                         name="bench-querycount").start()
    return _counts


def _flush_forever(counts: _Counts) -> None:
    path = _directory / f"{counts.pid}.json"
    while counts.pid == os.getpid():
        time.sleep(FLUSH_INTERVAL)
        with counts.lock:
            if not counts.changed:
                continue
            snapshot = {**counts.values, "pid": counts.pid, "role": _role}
            counts.changed = False
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(snapshot))
        tmp.replace(path)


def _count_statement(execute, sql, params, many, context):
    connection = context["connection"]
    counts = _current()
    counts.add("statements", len(params) if many and params is not None else 1)
    if connection.get_autocommit():
        counts.add("autocommit_statements")
    return execute(sql, params, many, context)


def _instrument(connection: Any) -> None:
    """Add the statement counter and wrap commit/rollback of one Django connection, once."""
    if getattr(connection, "_bench_counted", False):
        return
    connection._bench_counted = True
    connection.execute_wrappers.append(_count_statement)
    commit, rollback = connection.commit, connection.rollback

    def counted_commit() -> None:
        _current().add("commits")
        commit()

    def counted_rollback() -> None:
        _current().add("rollbacks")
        rollback()

    connection.commit, connection.rollback = counted_commit, counted_rollback


def _on_connection_created(sender, connection, **kwargs) -> None:
    _instrument(connection)


def _on_task_postrun(**kwargs) -> None:
    _current().add("tasks")


def install() -> None:
    """Connect the counters to Django's and Celery's signals (idempotent)."""
    from celery.signals import task_postrun
    from django.db.backends.signals import connection_created

    _directory.mkdir(parents=True, exist_ok=True)
    connection_created.connect(_on_connection_created, dispatch_uid="bench-querycount")
    task_postrun.connect(_on_task_postrun, dispatch_uid="bench-querycount", weak=False)


def read_totals(directory: Path) -> dict[str, dict[str, int]]:
    """Sum every process's file in `directory`, per role ("web", "worker", …)."""
    totals: dict[str, dict[str, int]] = {}
    for path in directory.glob("*.json"):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        role = totals.setdefault(data.get("role", "other"), dict.fromkeys(FIELDS, 0))
        for field in FIELDS:
            role[field] += int(data.get(field, 0))
    return totals
