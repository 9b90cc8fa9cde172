"""Metrics: access to /metrics, what requests count, the multiprocess mode, the worker listener."""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
from django.conf import settings
from prometheus_client.parser import text_string_to_metric_families

from config import metrics
from tests.conftest import make_interaction


def sample(text: str, name: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(text):
        for found in family.samples:
            if found.name == name and found.labels == labels:
                return found.value
    return None


def test_metrics_need_the_token_when_one_is_set(client, settings, db):
    settings.JUNCTION_METRICS_TOKEN = "s3cret-token"
    missing = client.get("/metrics")
    assert missing.status_code == 401 and missing["WWW-Authenticate"].startswith("Bearer")
    assert set(missing.json()) == {"code", "message", "details"}
    wrong = client.get("/metrics", HTTP_AUTHORIZATION="Bearer nope")
    assert wrong.status_code == 403 and wrong.json()["code"] == "permission_denied"
    right = client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-token", REMOTE_ADDR="203.0.113.9")
    assert right.status_code == 200 and b"junction_sessions_started_total" in right.content


def test_without_a_token_only_local_unproxied_clients_read_metrics(client, settings, db):
    settings.JUNCTION_METRICS_TOKEN = ""
    assert client.get("/metrics").status_code == 200  # the test client is 127.0.0.1
    remote = client.get("/metrics", REMOTE_ADDR="203.0.113.9")
    assert remote.status_code == 403 and remote.json()["code"] == "permission_denied"
    assert client.get("/metrics", HTTP_X_FORWARDED_FOR="203.0.113.9").status_code == 403


def test_requests_are_counted_by_route_pattern_not_path(api, user, client):
    interaction = make_interaction(user)
    before = sample(client.get("/metrics").content.decode(), "junction_http_requests_total",
                    method="GET", route="/api/interactions/<pk>/", status="200") or 0
    api.get(f"/api/interactions/{interaction.id}/")
    api.get(f"/api/interactions/{interaction.id}/")
    api.get("/no/such/page")
    text = client.get("/metrics").content.decode()
    assert sample(text, "junction_http_requests_total", method="GET", route="/api/interactions/<pk>/",
                  status="200") == before + 2
    http = [line for line in text.splitlines() if line.startswith("junction_http_")]
    assert http and not any(str(interaction.id) in line for line in http)  # no raw paths
    assert sample(text, "junction_http_requests_total", method="GET", route="unmatched", status="404") >= 1


def test_throttled_calls_are_counted(api, user, client, settings):
    from django.core.cache import cache

    cache.clear()
    settings.JUNCTION_RATE_PLANS = {"default": "1/min"}
    interaction = make_interaction(user, active=True)
    route = "/api/interactions/<pk>/run/"
    before = sample(client.get("/metrics").content.decode(), "junction_throttled_total", route=route) or 0
    for _ in range(3):
        api.post(f"/api/interactions/{interaction.id}/run/", {"shape": {"data": {}}}, format="json")
    after = sample(client.get("/metrics").content.decode(), "junction_throttled_total", route=route)
    assert after == before + 2
    cache.clear()


def test_session_durations_are_labelled_by_interaction(settings):
    settings.JUNCTION_METRICS_PER_INTERACTION = True
    metrics.session_finished("completed", 0.2, interaction="i-1")
    metrics.session_finished("failed")  # the old call still counts
    settings.JUNCTION_METRICS_PER_INTERACTION = False
    metrics.session_finished("completed", 0.3, interaction="i-1")
    text = metrics.render()
    assert sample(text, "junction_session_duration_seconds_count", interaction="i-1", status="completed") >= 1
    assert sample(text, "junction_session_duration_seconds_count", interaction="", status="completed") >= 1


def test_sweeper_actions_are_counted():
    before = sample(metrics.render(), "junction_sweeper_actions_total", action="resumed") or 0
    metrics.sweeper_acted(resumed=2, waiting=1)
    assert sample(metrics.render(), "junction_sweeper_actions_total", action="resumed") == before + 2


def test_deployment_gauges_are_read_at_scrape(client, user, db):
    from interactions.models import Session

    interaction = make_interaction(user, active=True)
    version = interaction.current_version
    stale = Session.objects.create(user=user, interaction=interaction, version=version, input={}, status="running")
    Session.objects.filter(pk=stale.pk).update(updated_at=stale.updated_at.replace(year=2000))
    text = client.get("/metrics").content.decode()
    assert sample(text, "junction_sessions_active", status="running") >= 1
    assert sample(text, "junction_sessions_stalled") >= 1
    assert sample(text, "junction_collector_up", source="database") == 1
    assert sample(text, "junction_queue_depth", queue="default") is not None


# --- the multiprocess mode ----------------------------------------------------------------------

CHILD = """
import os, sys, django
os.environ["DJANGO_SETTINGS_MODULE"] = "config.test_settings"
django.setup()
from config import metrics
metrics.task_finished("transform", "completed", 0.01)
metrics.process_started("worker")
if sys.argv[1] == "exit":
    metrics.process_exited()
else:
    os.kill(os.getpid(), 9)  # dies without saying so
"""


def test_processes_of_a_host_add_up_and_dead_ones_are_dropped(tmp_path):
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    for how in ("exit", "kill", "kill"):
        subprocess.run([sys.executable, "-c", CHILD, how], env=env, cwd=settings.BASE_DIR, timeout=60)
    assert len(list(tmp_path.glob("gauge_livesum_*.db"))) == 2  # the killed ones left theirs
    reader = ("import os, django; os.environ['DJANGO_SETTINGS_MODULE'] = 'config.test_settings'; django.setup(); "
              "from config import metrics; from prometheus_client import generate_latest; "
              "print(generate_latest(metrics.host_registry()).decode())")
    out = subprocess.run([sys.executable, "-c", reader], env=env, cwd=settings.BASE_DIR, timeout=60,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert sample(out.stdout, "junction_task_duration_seconds_count", type="transform", status="completed") == 3
    # Three processes counted themselves live; all are gone (one said so, two were killed).
    assert not sample(out.stdout, "junction_processes", kind="worker")
    assert not list(tmp_path.glob("gauge_livesum_*.db"))


def test_a_worker_host_serves_its_metrics_with_the_same_rule(settings):
    from config import metrics_listener

    server = metrics_listener.start("127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.server_port}/metrics"
    try:
        settings.JUNCTION_METRICS_TOKEN = ""
        with urllib.request.urlopen(url, timeout=5) as answer:
            assert b"junction_task_duration_seconds" in answer.read()
        settings.JUNCTION_METRICS_TOKEN = "tok"
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url, timeout=5)
        assert refused.value.code == 401 and json.loads(refused.value.read())["code"] == "not_authenticated"
        with urllib.request.urlopen(urllib.request.Request(url, headers={"Authorization": "Bearer tok"}),
                                    timeout=5) as answer:
            assert answer.status == 200
    finally:
        server.shutdown()


# --- under the real ASGI server ----------------------------------------------------------------

@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_asgi_requests_log_their_context_and_count_in_the_multiprocess_dir(user, tmp_path):
    from rest_framework_simplejwt.tokens import RefreshToken

    from tests.asgi_server import AsgiServer, request

    interaction = make_interaction(user, active=True)
    token = str(RefreshToken.for_user(user).access_token)
    # The cache is down: the run quota fails open with a WARNING logged inside the request.
    server = AsgiServer(extra_env={
        "LOG_FORMAT": "json", "LOG_LEVEL": "INFO", "CACHE_URL": "redis://127.0.0.1:1/0",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "JUNCTION_METRICS_TOKEN": "",
    }).start()
    try:
        run = asyncio.run(request(server.base_url, "POST", f"/api/interactions/{interaction.id}/run/",
                                  body={"shape": {"data": {"items": [1]}}},
                                  headers={"Authorization": f"Bearer {token}", "X-Request-ID": "asgi-1"}))
        assert run.status == 202, run.body
        assert run.headers["x-request-id"] == "asgi-1"
        scraped = asyncio.run(request(server.base_url, "GET", "/metrics"))
    finally:
        server.stop()
    lines = [json.loads(line) for line in server.log.read_text().splitlines() if line.startswith("{")]
    [warned] = [line for line in lines if line.get("request_id") == "asgi-1" and "rate limit" in line["message"]]
    assert warned["user_id"] == str(user.id) and warned["interaction_id"] == str(interaction.id)
    assert scraped.status == 200
    assert sample(scraped.body.decode(), "junction_http_requests_total", method="POST",
                  route="/api/interactions/<pk>/run/", status="202") == 1
    assert any(name.endswith(".db") for name in os.listdir(tmp_path))
