"""bench/capacity.py: the capacity model of docs/scaling.md is plain arithmetic on measured costs."""
from __future__ import annotations

import pytest

from bench.capacity import RESOURCES, SessionCost, demand, model_lines, saturation

COST = SessionCost(pg_commits=11.0, pg_rows_written=18.0, sql_statements=10.0, redis_commands=54.0,
                   broker_messages=2.0, web_cpu_ms=17.0, worker_cpu_ms=14.0, pg_cpu_ms=8.0,
                   redis_cpu_ms=2.0, task_seconds=0.05)


def test_demand_is_the_per_session_cost_times_the_rate():
    at_10 = demand(COST, 10.0)
    assert at_10["pg_commits_per_s"] == pytest.approx(110.0)
    assert at_10["redis_cores"] == pytest.approx(0.02)
    assert at_10["worker_slots"] == pytest.approx(0.5)  # Little's law: 10/s × 0.05 s
    assert demand(COST, 1000.0)["broker_messages_per_s"] == pytest.approx(100 * at_10["broker_messages_per_s"])


def test_saturation_divides_each_ceiling_by_todays_use_earliest_first():
    result = saturation(COST, 10.0, {"redis_commands_per_s": 5400.0})
    redis = next(r for r in result if r["resource"].demand_key == "redis_commands_per_s")
    assert redis["today"] == pytest.approx(540.0)
    assert redis["multiple_here"] == pytest.approx(10.0)
    assert redis["multiple"] == pytest.approx(100_000 / 540)
    assert [r["multiple"] for r in result] == sorted(r["multiple"] for r in result)


def test_model_lines_show_every_multiple_and_every_assumption():
    text = "\n".join(model_lines(COST, 10.0, {"pg_commits_per_s": 1500.0}))
    assert "| 1,000× today" in text
    assert "1,500 (pgbench -N)" in text
    assert all(r.why in text for r in RESOURCES)
