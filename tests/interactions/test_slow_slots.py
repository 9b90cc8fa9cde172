"""Per-user slots of slow task types (interactions/slots.py, docs/limits.md).

The slots live in Redis (the test settings' cache), which the worker processes share with this
process: a test fills some of a user's slots itself, as that user's other tasks (or a dead
worker) would, and watches what the workers do with the rest.
"""
from __future__ import annotations

import threading
import time
from datetime import datetime

import pytest
from django.conf import settings

from config.rediscache import redis_client
from interactions import redis_sender, slots
from tests.conftest import make_interaction, make_user
from tests.http_server import LocalHttpServer


def ts(value: str) -> datetime:
    return datetime.fromisoformat(value)


@pytest.fixture
def local_http():
    server = LocalHttpServer().start()
    yield server
    server.stop()


@pytest.fixture
def held():
    """Slots this test takes by hand; all given back at the end."""
    taken: list[slots.Slot] = []
    yield taken
    for slot in taken:
        slot.release()


def fill(held: list, user, count: int, lease: float = 60) -> None:
    for _ in range(count):
        slot = slots.take(user_id=user.id, lease_seconds=lease, label="test")
        assert slot is not None
        held.append(slot)


@pytest.mark.django_db
class TestSlots:
    def test_a_user_gets_at_most_the_limit(self, settings, held):
        settings.JUNCTION_MAX_SLOW_TASKS_PER_USER = 2
        user, other = make_user(), make_user()
        fill(held, user, 2)
        assert slots.take(user_id=user.id, lease_seconds=60) is None
        assert slots.held(user_id=user.id) == 2
        fill(held, other, 2)  # another user's slots are their own

    def test_a_released_slot_is_free_again(self, settings, held):
        settings.JUNCTION_MAX_SLOW_TASKS_PER_USER = 1
        user = make_user()
        fill(held, user, 1)
        held.pop().release()
        assert slots.held(user_id=user.id) == 0
        fill(held, user, 1)

    def test_a_slot_never_given_back_frees_itself_when_its_lease_ends(self, settings, held):
        # A worker killed mid-task never releases its slot: the lease bounds it.
        settings.JUNCTION_MAX_SLOW_TASKS_PER_USER = 1
        user = make_user()
        fill(held, user, 1, lease=0.3)
        assert slots.take(user_id=user.id, lease_seconds=60) is None
        time.sleep(0.4)
        fill(held, user, 1)

    def test_a_slot_given_back_is_free_here_before_the_release_has_left_the_process(self, settings, held):
        # The ZREM goes out on the sender thread, held up here: this process does not wait for it.
        settings.JUNCTION_MAX_SLOW_TASKS_PER_USER = 2
        user = make_user()
        fill(held, user, 2)
        gate = threading.Event()
        redis_sender.send(redis_client(), lambda commands: gate.wait(10))
        try:
            held.pop().release()
            fill(held, user, 1)  # its take removes the slot given back in the same round trip
            held.pop(0).release()
            assert slots.held(user_id=user.id) == 1  # and so does counting
        finally:
            gate.set()
        assert redis_sender.flush()
        assert slots.held(user_id=user.id) == 1  # the late ZREMs found nothing else to remove

    def test_releasing_twice_frees_one_slot(self, settings, held):
        settings.JUNCTION_MAX_SLOW_TASKS_PER_USER = 2
        user = make_user()
        fill(held, user, 2)
        slot = held.pop()
        slot.release()
        slot.release()
        assert slots.held(user_id=user.id) == 1


def two_slow_calls(local_http, seconds: float = 1) -> dict:
    url = local_http.url(f"/slow/{seconds}")
    return {
        "a": {"type": "http_request", "body": {"method": "GET", "url": url}},
        "b": {"type": "http_request", "body": {"method": "GET", "url": url}},
    }


def run(api, interaction, wait: int = 30):
    return api.post(f"/api/interactions/{interaction.id}/run/", {}, format="json", HTTP_PREFER=f"wait={wait}")


def overlap(session: dict) -> bool:
    a, b = session["tasks"]["a"], session["tasks"]["b"]
    return ts(a["started_at"]) < ts(b["finished_at"]) and ts(b["started_at"]) < ts(a["finished_at"])


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
class TestWithWorkers:
    def test_past_the_limit_a_users_slow_tasks_wait_for_each_other(self, celery_workers, api, user, local_http,
                                                                 held):
        fill(held, user, settings.JUNCTION_MAX_SLOW_TASKS_PER_USER - 1)  # one slot left
        interaction = make_interaction(user, active=True, tasks=two_slow_calls(local_http))
        session = run(api, interaction).json()
        assert session["status"] == "completed", session
        assert not overlap(session)  # one ran after the other: they waited, none failed
        assert {t["attempts"] for t in session["tasks"].values()} == {1}

    def test_another_users_slow_tasks_are_not_held_up(self, celery_workers, api, user, other_user, other_api,
                                                      local_http, held):
        fill(held, user, settings.JUNCTION_MAX_SLOW_TASKS_PER_USER)  # this user has none left
        interaction = make_interaction(other_user, active=True, tasks=two_slow_calls(local_http))
        session = run(other_api, interaction).json()
        assert session["status"] == "completed", session
        assert overlap(session)

    def test_a_slot_held_by_a_dead_worker_frees_at_its_lease(self, celery_workers, api, user, local_http, held):
        fill(held, user, settings.JUNCTION_MAX_SLOW_TASKS_PER_USER - 1)
        fill(held, user, 1, lease=2)  # taken, never given back: its worker "died"
        interaction = make_interaction(user, active=True, tasks={
            "a": {"type": "http_request", "body": {"method": "GET", "url": local_http.url("/slow/0")}},
        })
        started = time.monotonic()
        session = run(api, interaction).json()
        assert session["status"] == "completed", session
        assert time.monotonic() - started >= 1.5


@pytest.mark.django_db
class TestTrials:
    def test_a_trial_of_a_slow_type_past_the_limit_is_429(self, api, user, local_http, held):
        fill(held, user, settings.JUNCTION_MAX_SLOW_TASKS_PER_USER)
        response = api.post("/api/task-types/http_request/test/",
                            {"body": {"method": "GET", "url": local_http.url("/echo")}}, format="json")
        assert response.status_code == 429
        assert response.json()["code"] == "too_many_slow_tasks"
        assert int(response["Retry-After"]) >= 1
        assert local_http.requests == []

    def test_a_trial_of_a_type_that_is_not_slow_takes_no_slot(self, api, user, held):
        fill(held, user, settings.JUNCTION_MAX_SLOW_TASKS_PER_USER)
        response = api.post("/api/task-types/transform/test/", {"body": {"data": {"x": 1}, "expression": "x"}},
                            format="json")
        assert response.status_code == 200
        assert response.json()["output"] == 1

    def test_a_trial_gives_its_slot_back(self, api, user, local_http):
        response = api.post("/api/task-types/http_request/test/",
                            {"body": {"method": "GET", "url": local_http.url("/echo")}}, format="json")
        assert response.json()["status"] == "completed"
        assert slots.held(user_id=user.id) == 0

    def test_a_trial_is_bounded_by_the_tasks_own_timeout(self, api, local_http):
        response = api.post("/api/task-types/http_request/test/",
                            {"body": {"method": "GET", "url": local_http.url("/slow/5")}, "timeout": 1},
                            format="json")
        result = response.json()
        assert result["status"] == "failed"
        assert "timed out" in result["error"] or "timeout" in result["error"].lower()
        assert result["duration_ms"] < 3000


@pytest.mark.django_db
def test_a_server_that_lost_the_scripts_still_gives_and_counts_slots(settings, held):
    """The scripts go by their SHA; a Redis that forgot them (a restart, SCRIPT FLUSH) gets them again."""
    from config.rediscache import redis_client

    settings.JUNCTION_MAX_SLOW_TASKS_PER_USER = 1
    user = make_user()
    redis_client().script_flush()
    fill(held, user, 1)
    assert slots.take(user_id=user.id, lease_seconds=60) is None
    redis_client().script_flush()
    assert slots.held(user_id=user.id) == 1
