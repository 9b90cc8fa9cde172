"""Real Celery worker processes for tests, on Redis, against the test PostgreSQL database."""
from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import redis
from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


def flush_redis() -> None:
    for url in {settings.CELERY_BROKER_URL, settings.CELERY_RESULT_BACKEND}:
        redis.Redis.from_url(url).flushdb()


def _die_with_parent() -> None:
    """Have the kernel send SIGTERM to the worker when the test process dies, however it dies.

    A test run killed outright (a timeout, Ctrl-C twice) otherwise leaves its workers running
    with the old code, consuming the next run's queues on the same Redis database.
    """
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class WorkerPool:
    """Start `count` `celery worker` processes and stop them on `stop()`."""

    def __init__(
        self, count: int = 2, concurrency: int = 2, queues: str = "default,code", extra_env: dict | None = None,
        name: str = "test", pool: str = "prefork",
    ):
        self.count, self.concurrency, self.queues, self.name = count, concurrency, queues, name
        self.pool = pool
        self.extra_env = extra_env or {}
        self.processes: list[subprocess.Popen] = []
        self.log_dir = Path(os.environ.get("JUNCTION_TEST_LOG_DIR", "/tmp/junction-test-workers"))

    def env(self) -> dict[str, str]:
        db = connection.settings_dict
        env = dict(os.environ)
        env.update({
            "DJANGO_SETTINGS_MODULE": "config.test_settings",
            "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
            "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
            "CELERY_RESULT_BACKEND": settings.CELERY_RESULT_BACKEND,
            "LOG_LEVEL": "WARNING",
        })
        env.update(self.extra_env)
        return env

    def start_one(self, index: int) -> subprocess.Popen:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_dir / f"{self.name}-{os.getpid()}-{index}.log", "ab")
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", "worker", "-P", self.pool,
             "-c", str(self.concurrency), "-Q", self.queues, "-n", f"{self.name}{index}-{os.getpid()}@%h",
             "--without-mingle", "--without-gossip", "--loglevel", "WARNING"],
            cwd=ROOT, env=self.env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        self.processes.append(process)
        return process

    def start(self) -> "WorkerPool":
        for index in range(self.count):
            self.start_one(index)
        self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 30) -> None:
        from config.celery import app

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            replies = app.control.ping(timeout=0.5) or []
            if len(replies) >= len([p for p in self.processes if p.poll() is None]):
                return
        raise RuntimeError(f"workers did not answer within {timeout} s; logs in {self.log_dir}")

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self.processes.clear()
