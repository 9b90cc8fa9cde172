"""Session retention: old finished sessions go, in batches; active ones never do."""
from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from interactions.models import Session, TaskRun
from interactions.retention import retention_cutoff, sessions_purge
from tests.conftest import make_interaction


def make_session(user, interaction, *, status: str, age_days: float, finished: bool = True) -> Session:
    when = timezone.now() - timedelta(days=age_days)
    session = Session.objects.create(
        user=user, interaction=interaction, version=interaction.current_version, input={}, status=status,
        finished_at=when if finished else None,
    )
    TaskRun.objects.create(session=session, name="shape", status="completed" if finished else "pending")
    Session.objects.filter(pk=session.pk).update(created_at=when, updated_at=when)
    return session


@pytest.fixture
def interaction(user):
    return make_interaction(user, active=True)


def test_purge_deletes_old_finished_sessions_with_their_tasks(user, interaction):
    old = [make_session(user, interaction, status=status, age_days=40)
           for status in ("completed", "failed", "cancelled", "timed_out")]
    recent = make_session(user, interaction, status="completed", age_days=5)
    deleted = sessions_purge(before=timezone.now() - timedelta(days=30), batch=3)
    assert deleted == 4
    assert not Session.objects.filter(pk__in=[s.pk for s in old]).exists()
    assert not TaskRun.objects.filter(session_id__in=[s.pk for s in old]).exists()
    assert Session.objects.filter(pk=recent.pk).exists()


def test_purge_never_touches_queued_or_running_sessions(user, interaction):
    # Old and active: a session stuck for months is the sweeper's business, not retention's.
    queued = make_session(user, interaction, status="queued", age_days=90, finished=False)
    running = make_session(user, interaction, status="running", age_days=90, finished=False)
    Session.objects.filter(pk=running.pk).update(finished_at=timezone.now() - timedelta(days=90))  # even so
    assert sessions_purge(before=timezone.now()) == 0
    assert Session.objects.filter(pk__in=[queued.pk, running.pk]).count() == 2
    assert TaskRun.objects.filter(session_id__in=[queued.pk, running.pk]).count() == 2


def test_a_retry_outlives_the_session_it_retried(user, interaction):
    original = make_session(user, interaction, status="failed", age_days=40)
    retry = make_session(user, interaction, status="completed", age_days=1)
    Session.objects.filter(pk=retry.pk).update(retry_of=original)
    assert sessions_purge(before=timezone.now() - timedelta(days=30)) == 1
    retry.refresh_from_db()
    assert retry.retry_of_id is None


def test_limit_bounds_one_round(user, interaction):
    for _ in range(5):
        make_session(user, interaction, status="completed", age_days=40)
    assert sessions_purge(before=timezone.now(), batch=2, limit=3) == 3
    assert Session.objects.count() == 2


def test_retention_zero_keeps_everything(settings):
    settings.JUNCTION_SESSION_RETENTION_DAYS = 0
    assert retention_cutoff() is None


def test_the_command_uses_the_setting_or_days(user, interaction, settings):
    settings.JUNCTION_SESSION_RETENTION_DAYS = 30
    make_session(user, interaction, status="completed", age_days=40)
    make_session(user, interaction, status="completed", age_days=10)
    out = StringIO()
    call_command("purge_sessions", stdout=out)
    assert "Deleted 1 sessions" in out.getvalue()
    call_command("purge_sessions", "--days", "7", stdout=out)
    assert Session.objects.count() == 0
    with pytest.raises(CommandError):
        call_command("purge_sessions", "--days", "0")
    settings.JUNCTION_SESSION_RETENTION_DAYS = 0
    call_command("purge_sessions", stdout=out)
    assert "Retention is off" in out.getvalue()


def test_the_beat_job_is_scheduled(settings):
    from interactions.tasks import purge_sessions

    assert settings.CELERY_BEAT_SCHEDULE["purge-sessions"]["task"] == purge_sessions.name == "junction.purge_sessions"


def test_the_beat_job_purges(user, interaction, settings):
    from interactions.tasks import purge_sessions

    settings.JUNCTION_SESSION_RETENTION_DAYS = 30
    make_session(user, interaction, status="completed", age_days=40)
    purge_sessions.run()
    assert Session.objects.count() == 0
