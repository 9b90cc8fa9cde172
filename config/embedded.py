"""The in-process Celery worker of the embedded mode.

With no broker configured (`CELERY_BROKER_URL` unset, so `memory://`), `manage.py serve` runs
the API and a Celery worker in one process: the worker consumes from kombu's in-memory
transport in a daemon thread, with a thread pool so that independent branches of a session
really run in parallel. Distributed deployments never import this: they run
`celery -A config worker` processes instead.

Two things to know when writing code that runs here:
- kombu's memory transport polls once a second unless `polling_interval` is small; settings
  set it to 5 ms in the embedded mode.
- Celery marks the whole process as "inside a worker" once a worker starts, so waiting on a
  result from the API thread would need `result.get(..., disable_sync_subtasks=False)`. Waiting
  callers do not use results: they wait for session events (`interactions/events.py`), which
  here go through an in-process bus from the worker threads to the server's event loop.
"""
from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Any, cast

from celery.signals import worker_ready
from django.conf import settings

from config.celery import app as celery_app
from config.queues import Queue

logger = logging.getLogger(__name__)

# Every queue Junction routes tasks to. A distributed worker started without -Q consumes all
# queues it knows; the embedded worker must consume each of these explicitly.
QUEUES: tuple[str, ...] = tuple(str(queue) for queue in Queue)
CONCURRENCY = 4
READY_TIMEOUT = 30.0

_lock = threading.Lock()
_ready = threading.Event()
_worker: Any = None
_thread: threading.Thread | None = None


class EmbeddedWorkerError(RuntimeError):
    """The embedded worker did not start consuming in time."""


def _make_worker_class() -> type:
    """Return a Worker that leaves process-wide state (signals, logging, title) to the server."""

    class EmbeddedWorker(celery_app.Worker):
        def setup_logging(self, colorize: bool | None = None) -> bool:
            # Keep Django's LOGGING: returning True tells Celery logging is configured.
            return True

        def install_platform_tweaks(self, worker: Any) -> None:
            # Signal handlers belong to the main thread (the HTTP server), not to us.
            return None

        def set_process_status(self, info: str) -> None:
            return None

    return EmbeddedWorker


@worker_ready.connect
def _on_worker_ready(sender: Any = None, **kwargs: Any) -> None:
    if _worker is not None and sender is not None and getattr(sender, "hostname", None) == _worker.hostname:
        _ready.set()


def is_running() -> bool:
    return _thread is not None and _thread.is_alive() and _ready.is_set()


def start_embedded_worker(*, loglevel: str = "INFO", timeout: float = READY_TIMEOUT) -> bool:
    """Start the in-process worker and return once it consumes; True if this call started it.

    A no-op (returning False) outside the embedded mode or when the worker already runs.
    Raises EmbeddedWorkerError if the worker is not consuming within `timeout` seconds.
    """
    global _worker, _thread
    if not settings.EMBEDDED:
        return False
    with _lock:
        if _thread is not None and _thread.is_alive():
            return False
        _ready.clear()
        # Django's LOGGING stays in charge; the worker's loglevel only applies to Celery's loggers.
        logging.getLogger("celery").setLevel(loglevel)
        # memory:// has no host name; kombu warns about that on every connection.
        logging.getLogger("kombu.connection").setLevel(logging.ERROR)
        _worker = _make_worker_class()(
            hostname=f"embedded-{threading.get_native_id()}@{socket.gethostname()}",
            pool="threads",
            concurrency=CONCURRENCY,
            queues=list(QUEUES),
            loglevel=loglevel,
            without_heartbeat=True,
            without_mingle=True,
            without_gossip=True,
            redirect_stdouts=False,
            quiet=True,
        )
        _thread = threading.Thread(target=_worker.start, name="junction-embedded-worker", daemon=True)
        _thread.start()
    if not _ready.wait(timeout):
        raise EmbeddedWorkerError(f"The embedded Celery worker was not ready within {timeout:g} s.")
    _start_sweeper()
    logger.info("Embedded Celery worker consuming %s with %d threads", ", ".join(QUEUES), CONCURRENCY)
    return True


def stop_embedded_worker(*, timeout: float = 10.0) -> None:
    """Stop the in-process worker (warm shutdown) and wait for its thread to end."""
    global _worker, _thread
    with _lock:
        worker, thread = _worker, _thread
        _worker, _thread = None, None
        _ready.clear()
    if worker is not None:
        worker.stop(in_sighandler=False)
    if thread is not None:
        thread.join(timeout)


_sweeper: threading.Thread | None = None


def _sweep_forever() -> None:
    """Do beat's job in the embedded mode: run the sweeper every JUNCTION_SWEEP_INTERVAL s."""
    from django.db import close_old_connections

    from interactions.sweeper import sessions_sweep

    interval = cast(float, settings.CELERY_BEAT_SCHEDULE["sweep-sessions"]["schedule"])
    while _ready.wait(None) and _thread is not None:
        time.sleep(interval)
        try:
            sessions_sweep()
        except Exception:  # keep sweeping: a failed round is retried at the next one
            logger.exception("sweeper round failed")
        finally:
            close_old_connections()


def _start_sweeper() -> None:
    global _sweeper
    if _sweeper is None or not _sweeper.is_alive():
        _sweeper = threading.Thread(target=_sweep_forever, name="junction-embedded-sweeper", daemon=True)
        _sweeper.start()
