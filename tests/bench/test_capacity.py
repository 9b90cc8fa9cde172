"""bench/capacity.py: the capacity model of docs/scaling.md is plain arithmetic on measured costs."""
from __future__ import annotations

import pytest

from bench.capacity import CEILINGS, SessionCost, demand, model_lines, saturation

COST = SessionCost(pg_commits=11.0, pg_rows_written=18.0, sql_statements=10.0, redis_commands=54.0,
                   broker_messages=2.0, web_cpu_ms=17.0, worker_cpu_ms=14.0, pg_cpu_ms=8.0,
                   redis_cpu_ms=2.0, task_seconds=0.05)


def test_demand_is_the_per_session_cost_times_the_rate():
    at_10 = demand(COST, 10.0)
    assert at_10["pg_commits_per_s"] == pytest.approx(110.0)
    assert at_10["redis_cores"] == pytest.approx(0.02)
    assert at_10["worker_slots"] == pytest.approx(0.5)  # Little's law: 10/s × 0.05 s
    assert demand(COST, 1000.0)["broker_messages_per_s"] == pytest.approx(100 * at_10["broker_messages_per_s"])


def test_saturation_is_the_ceiling_over_todays_use_first_one_first():
    result = saturation(COST, 10.0)
    redis = next(r for r in result if r["ceiling"] is CEILINGS["redis_cores"])
    assert redis["multiple"] == pytest.approx(1.0 / 0.02)
    assert [r["multiple"] for r in result] == sorted(r["multiple"] for r in result)


def test_model_lines_show_every_multiple_and_every_assumption():
    text = "\n".join(model_lines(COST, 10.0))
    assert "| 1,000× today" in text
    assert all(c.why in text for c in CEILINGS.values())
