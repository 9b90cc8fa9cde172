"""Hard time limits for workers whose pool cannot kill a task: restart the whole worker.

Celery's prefork pool kills a pool process whose task outlives its hard time limit
(`time_limit`, the task's timeout + JUNCTION_HARD_TIMEOUT_GRACE), and the reliability design
relies on it: a claim's lease (the hard limit + JUNCTION_LEASE_GRACE) outlasts the task, so a
take-over never overlaps a task still running (docs/reliability.md). The threads pool (the
`default` queue's, docs/scaling.md) enforces no time limit at all: a thread cannot be killed.
Task types honour their timeout themselves (an HTTP request's deadline, SMTP and Twitter socket
timeouts), but a server that answers one byte at a time can stretch a socket timeout without
end, and so can a DNS lookup.

So in such a worker a watchdog thread looks at the running tasks every WATCH_INTERVAL seconds;
when one has outlived its message's hard limit, it logs which and replaces the worker process
with a fresh one (`os.execv` of the same command, as Celery's own restart does): every thread
ends at once, as a prefork pool process would under its hard kill, and the worker is back
within a second or two, with no supervisor involved. The other tasks the process was running end
with it, as under a lost worker: their claims are taken over when their leases run out
(`interactions/sweeper.py`), each a worker loss toward JUNCTION_MAX_WORKER_LOSSES. A take-over
still never overlaps a live task: the watchdog acts at the hard limit + WATCH_INTERVAL, inside
the lease's JUNCTION_LEASE_GRACE. (Not in the embedded mode, whose in-process worker shares the
server's process: config/celery.py installs this only in a `celery worker`.)
"""
from __future__ import annotations

import logging
import os
import sys
import threading
import time
from typing import Any

from celery.signals import task_postrun, task_prerun

logger = logging.getLogger(__name__)

WATCH_INTERVAL = 0.5

_running: dict[str, tuple[str, float]] = {}  # task id -> (task name, monotonic hard deadline)
_lock = threading.Lock()
_installed = False


def _pool_class(pool_cls) -> Any:
    """A worker's pool class, from its class or its name (`-P threads`)."""
    from celery.concurrency import get_implementation

    return get_implementation(pool_cls) if isinstance(pool_cls, str) else pool_cls


def enforces_limits(pool_cls) -> bool:
    """Whether a worker pool kills a task past its hard time limit (only prefork does)."""
    from celery.concurrency.prefork import TaskPool as Prefork

    pool = _pool_class(pool_cls)
    return isinstance(pool, type) and issubclass(pool, Prefork)


def install(pool_cls=None) -> None:
    """Track this worker's running tasks and start the watchdog (once per process).

    A cancel asks the workers to terminate the session's running tasks (`revoke(terminate=True)`);
    the pool here cannot, and would answer with an error: it says so in a debug line instead.
    The task runs to its own end, and its record is refused (the session has ended).
    """
    global _installed
    if _installed:
        return
    _installed = True
    pool = _pool_class(pool_cls)
    if hasattr(pool, "terminate_job"):
        pool.terminate_job = _cannot_terminate  # this process's pool class only
    task_prerun.connect(_started, weak=False, dispatch_uid="junction-hardlimits-start")
    task_postrun.connect(_ended, weak=False, dispatch_uid="junction-hardlimits-end")
    threading.Thread(target=_watch, name="junction-hard-limits", daemon=True).start()


def _cannot_terminate(self, pid, signal=None) -> None:
    logger.debug("a running task cannot be terminated in this pool: it runs to its end, its record refused")


def _started(task_id=None, task=None, **_) -> None:
    hard = None
    limits = getattr(getattr(task, "request", None), "timelimit", None) or (None, None)
    if limits[0]:
        hard = float(limits[0])
    elif getattr(task, "time_limit", None):
        hard = float(task.time_limit)
    elif task is not None and task.app.conf.task_time_limit:
        hard = float(task.app.conf.task_time_limit)
    if hard and task_id:
        with _lock:
            _running[task_id] = (getattr(task, "name", "?"), time.monotonic() + hard)


def _ended(task_id=None, **_) -> None:
    with _lock:
        _running.pop(task_id, None)


def overdue(now: float | None = None) -> list[tuple[str, str, float]]:
    """The running tasks past their hard limit: (task id, task name, seconds past it)."""
    now = time.monotonic() if now is None else now
    with _lock:
        return [(task_id, name, now - deadline) for task_id, (name, deadline) in _running.items() if now > deadline]


def _watch() -> None:
    while True:
        time.sleep(WATCH_INTERVAL)
        late = overdue()
        if late:
            _restart(late)


def _restart(late: list[tuple[str, str, float]]) -> None:
    from config import oplog

    for task_id, name, past in late:
        oplog.worker_restarted_for_hard_limit(task_id=task_id, task_name=name, seconds_past=past)
    for handler in logging.getLogger().handlers:
        try:
            handler.flush()
        except Exception:  # noqa: BLE001 - the restart must happen whatever a handler does
            pass
    sys.stdout.flush()
    sys.stderr.flush()
    # As Celery's own restart (celery.apps.worker._reload_current_worker): the same interpreter
    # and arguments, in this process (same pid); descriptors Python opened close on exec.
    # `python -m celery` leaves celery/__main__.py in argv[0], which does not run as a script.
    argv = sys.argv[1:] if sys.argv and sys.argv[0].endswith("__main__.py") else None
    os.execv(sys.executable, [sys.executable, "-m", "celery", *argv] if argv is not None
             else [sys.executable] + sys.argv)
