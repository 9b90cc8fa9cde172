"""Operations: per-user rate limits on runs and the Prometheus metrics."""
from __future__ import annotations

import pytest
from django.core.cache import cache
from prometheus_client.parser import text_string_to_metric_families

from interactions.models import Session
from tests.conftest import make_interaction


@pytest.fixture(autouse=True)
def _clear_cache():
    cache.clear()
    yield
    cache.clear()


def test_run_rate_limited_by_plan(api, user, settings):
    settings.JUNCTION_RATE_PLANS = {"default": "100/min", "tiny": "2/min"}
    user.plan = "tiny"
    user.save(update_fields=["plan"])
    interaction = make_interaction(user, active=True)
    url = f"/api/interactions/{interaction.id}/run/"
    body = {"shape": {"data": {"items": [1]}}}
    assert api.post(url, body, format="json").status_code == 202
    assert api.post(url, body, format="json").status_code == 202
    limited = api.post(url, body, format="json")
    assert limited.status_code == 429
    assert set(limited.json()) == {"code", "message", "details"}
    assert limited.json()["code"] == "throttled"
    assert 0 < int(limited["Retry-After"]) <= 60
    assert Session.objects.filter(user=user).count() == 2  # the refused call created nothing


def test_unlimited_plan_is_not_throttled(api, user, settings):
    settings.JUNCTION_RATE_PLANS = {"default": "1/min", "unlimited": "none"}
    user.plan = "unlimited"
    user.save(update_fields=["plan"])
    interaction = make_interaction(user, active=True)
    for _ in range(3):
        response = api.post(f"/api/interactions/{interaction.id}/run/", {"shape": {"data": {}}}, format="json")
        assert response.status_code == 202


def test_rate_limits_are_per_user(api, other_api, user, other_user, settings):
    settings.JUNCTION_RATE_PLANS = {"default": "1/min"}
    mine, theirs = make_interaction(user, active=True), make_interaction(other_user, active=True)
    assert api.post(f"/api/interactions/{mine.id}/run/", {"shape": {"data": {}}}, format="json").status_code == 202
    assert api.post(f"/api/interactions/{mine.id}/run/", {"shape": {"data": {}}}, format="json").status_code == 429
    assert other_api.post(f"/api/interactions/{theirs.id}/run/", {"shape": {"data": {}}}, format="json").status_code == 202


def samples(client) -> dict[tuple[str, tuple], float]:
    """Every sample of `/metrics`, by name and sorted labels."""
    response = client.get("/metrics")
    assert response.status_code == 200, response.content
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_metrics_count_sessions_tasks_and_queues(celery_workers, api, user, client):
    # Counters are per process and never reset (Prometheus takes increases): compare before/after.
    before = samples(client)
    interaction = make_interaction(user, active=True)
    ok = api.post(f"/api/interactions/{interaction.id}/run/", {"shape": {"data": {"items": [1]}}},
                  format="json", HTTP_PREFER="wait=30")
    failed = api.post(f"/api/interactions/{interaction.id}/run/", {"shape": {"data": {"items": []}}},
                      format="json", HTTP_PREFER="wait=30")
    assert ok.json()["status"] == "completed" and failed.json()["status"] == "failed"

    after = samples(client)

    def added(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0) - before.get(key, 0)

    assert added("junction_sessions_started_total") == 2
    assert added("junction_sessions_finished_total", status="completed") == 1
    assert added("junction_sessions_finished_total", status="failed") == 1
    # Three tasks ran: two transforms (completed), one condition completed and one failed.
    assert added("junction_task_duration_seconds_count", type="transform", status="completed") == 2
    assert added("junction_task_duration_seconds_count", type="condition", status="failed") == 1
    assert after[("junction_queue_depth", (("queue", "default"),))] == 0
    assert after[("junction_queue_depth", (("queue", "code"),))] == 0
    assert added("junction_http_requests_total", method="POST", route="/api/interactions/<pk>/run/",
                 status="200") == 2
    assert after[("junction_workers", ())] >= 2  # the two test workers answered the ping
    assert after[("junction_sessions_active", (("status", "running"),))] >= 0
