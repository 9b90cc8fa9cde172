"""The embedded mode's in-process worker, run as a user would: in a fresh process, no services."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Variables that select the distributed stack; the embedded mode is "none of them set".
DISTRIBUTED = ("DATABASE_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "SECRET_KEY", "JUNCTION_ENCRYPTION_KEYS")


def embedded_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in DISTRIBUTED}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        JUNCTION_STATE_DIR=str(tmp_path / "state"),
        PYTHONPATH=str(ROOT),
        PYTHONUNBUFFERED="1",
    )
    return env


SCRIPT = textwrap.dedent(
    """
    import time
    import django
    django.setup()
    from celery import group
    from config.celery import app
    from config.embedded import QUEUES, start_embedded_worker, stop_embedded_worker

    @app.task(name="junction.tests.nap")
    def nap(seconds):
        time.sleep(seconds)
        return seconds

    assert start_embedded_worker(loglevel="WARNING") is True
    assert start_embedded_worker() is False  # already running
    from config import hardlimits
    assert not hardlimits._installed  # a hung task never restarts the whole embedded server
    began = time.monotonic()
    result = group(nap.s(0.5).set(queue=queue) for queue in QUEUES for _ in range(2)).apply_async()
    values = result.get(timeout=20, disable_sync_subtasks=False)
    elapsed = time.monotonic() - began
    stop_embedded_worker()
    print("values", values, "elapsed", round(elapsed, 2))
    assert values == [0.5] * 4
    assert elapsed < 1.5, elapsed  # four half-second tasks at once on four threads
    print("OK")
    """
)


@pytest.mark.slow
def test_embedded_worker_consumes_every_queue_in_parallel(tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, env=embedded_env(tmp_path),
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0 and "OK" in done.stdout, done.stdout + done.stderr


def test_start_is_a_no_op_outside_the_embedded_mode(settings):
    from config.embedded import is_running, start_embedded_worker

    settings.EMBEDDED = False
    assert start_embedded_worker() is False
    assert not is_running()
