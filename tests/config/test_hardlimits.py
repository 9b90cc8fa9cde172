"""Which pools get the hard-limit watchdog (config/hardlimits.py); the watchdog itself is tested
on a real threads worker in tests/reliability/test_faults.py."""
from __future__ import annotations

import pytest
from celery.concurrency import get_implementation

from config.hardlimits import enforces_limits


@pytest.mark.parametrize("pool, enforced", [("prefork", True), ("threads", False), ("solo", False)])
def test_only_prefork_kills_a_task_past_its_hard_limit(pool, enforced):
    assert enforces_limits(pool) is enforced
    assert enforces_limits(get_implementation(pool)) is enforced
