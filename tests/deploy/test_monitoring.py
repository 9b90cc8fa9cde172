"""deploy/: the Prometheus rules and the Grafana dashboard name only metrics Junction exports."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
RULES = DEPLOY / "prometheus-rules.yml"
METRIC = re.compile(r"\b(junction_[a-z_]+|junction:[a-z0-9_:]+)")


@pytest.fixture
def exported(db) -> set[str]:
    """Every family and sample name `/metrics` exposes, once each has a sample."""
    from django.test import Client

    from config import metrics

    metrics.session_finished("completed", 0.1, "i")
    metrics.task_finished("transform", "completed", 0.1)
    metrics.THROTTLED.labels("/x")
    metrics.HTTP_REQUESTS.labels("GET", "/x", "200")
    metrics.HTTP_DURATION.labels("GET", "/x")
    metrics.process_started("api")
    text = Client().get("/metrics").content.decode()
    names = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
    # Series that appear only once a worker answers or a scrape reads them.
    return names | {"junction_workers", "junction_worker_up"}


def rules() -> list[dict]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def test_rules_have_the_required_fields():
    document = yaml.safe_load(RULES.read_text())
    for group in document["groups"]:
        assert group["name"] and group["rules"]
    alerts = [rule for rule in rules() if "alert" in rule]
    for rule in rules():
        assert ("alert" in rule) != ("record" in rule) and rule["expr"].strip()
    for alert in alerts:
        assert alert["labels"]["severity"] in {"page", "warn"}
        assert alert["annotations"]["summary"]
    # What the issue asks alerts for: stuck sessions, a growing queue, a failure rate.
    assert {"JunctionSessionsStalled", "JunctionQueueGrowing", "JunctionSessionFailureRateHigh"} <= {
        alert["alert"] for alert in alerts}


def test_rules_and_dashboard_name_only_exported_metrics(exported):
    recorded = {rule["record"] for rule in rules() if "record" in rule}
    dashboard = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
    exprs = [rule["expr"] for rule in rules()]
    exprs += [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    assert exprs
    for expr in exprs:
        for name in METRIC.findall(expr):
            assert name in exported | recorded, f"{name} in {expr!r} is not exported"


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed (Debian: prometheus)")
def test_promtool_accepts_the_rules_and_the_configuration(tmp_path):
    checked = subprocess.run(["promtool", "check", "rules", str(RULES)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # The example configuration, with its token file where this test can make one.
    token = tmp_path / "token"
    token.write_text("t")
    config = (DEPLOY / "prometheus.yml").read_text().replace("/etc/prometheus/junction-token", str(token))
    (tmp_path / "prometheus.yml").write_text(config)
    shutil.copy(RULES, tmp_path / RULES.name)
    checked = subprocess.run(["promtool", "check", "config", str(tmp_path / "prometheus.yml")],
                             capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
