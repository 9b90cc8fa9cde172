"""Per-user concurrency: at most JUNCTION_MAX_ACTIVE_SESSIONS queued or running sessions."""
from __future__ import annotations

import pytest

from interactions.models import Session
from tests.accounts.test_auth import assert_error
from tests.conftest import make_interaction

RUN_BODY = {"shape": {"data": {"items": [1]}}}


def active_sessions(user, interaction, count: int) -> None:
    for _ in range(count):
        Session.objects.create(user=user, interaction=interaction, version=interaction.current_version,
                               status=Session.Status.RUNNING, input={})


@pytest.mark.django_db
class TestActiveSessionQuota:
    def test_a_run_past_the_limit_is_429_and_creates_nothing(self, settings, api, user):
        settings.JUNCTION_MAX_ACTIVE_SESSIONS = 2
        interaction = make_interaction(user, active=True)
        active_sessions(user, interaction, 2)
        before = Session.objects.count()
        response = api.post(f"/api/interactions/{interaction.id}/run/", RUN_BODY, format="json")
        assert_error(response, 429, "too_many_active_sessions")
        assert int(response["Retry-After"]) >= 1
        assert Session.objects.count() == before

    def test_a_retry_past_the_limit_is_429(self, settings, api, user):
        settings.JUNCTION_MAX_ACTIVE_SESSIONS = 1
        interaction = make_interaction(user, active=True)
        failed = Session.objects.create(user=user, interaction=interaction, version=interaction.current_version,
                                        status=Session.Status.FAILED, input=RUN_BODY)
        active_sessions(user, interaction, 1)
        before = Session.objects.count()
        assert_error(api.post(f"/api/sessions/{failed.id}/retry/"), 429, "too_many_active_sessions")
        assert Session.objects.count() == before

    def test_finished_sessions_and_other_users_do_not_count(self, settings, api, user, other_user):
        settings.JUNCTION_MAX_ACTIVE_SESSIONS = 1
        mine = make_interaction(user, active=True)
        theirs = make_interaction(other_user, active=True)
        active_sessions(other_user, theirs, 3)
        Session.objects.create(user=user, interaction=mine, version=mine.current_version,
                               status=Session.Status.COMPLETED, input={})
        response = api.post(f"/api/interactions/{mine.id}/run/", RUN_BODY, format="json")
        assert response.status_code in (200, 202), response.content

    def test_under_the_limit_runs(self, settings, api, user):
        settings.JUNCTION_MAX_ACTIVE_SESSIONS = 3
        interaction = make_interaction(user, active=True)
        active_sessions(user, interaction, 2)
        assert api.post(f"/api/interactions/{interaction.id}/run/", RUN_BODY, format="json").status_code in (200, 202)
