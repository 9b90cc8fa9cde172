"""The sweeper's judgement of stalled sessions: resume, wait behind a backlog, or give up."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from interactions.models import Session
from interactions.sessions import session_start
from interactions.sweeper import sessions_sweep
from tests.conftest import make_interaction

pytestmark = pytest.mark.django_db(transaction=True)
# A step that needs a worker and is not a timer (a pure task would end the session in the call
# that starts it; the call claims a delay itself). Nothing consumes it in these tests.
TASKS = {"only": {"type": "http_request", "body": {"url": "http://127.0.0.1:9/"}}}


def stalled_session(user, settings, *, resumes: int) -> Session:
    session, _ = session_start(user=user, interaction=make_interaction(user, tasks=TASKS, active=True), data={})
    Session.objects.filter(pk=session.pk).update(
        resumes=resumes, updated_at=timezone.now() - timedelta(seconds=settings.JUNCTION_STALL_SECONDS + 5)
    )
    return session


def test_a_stalled_session_is_resumed_from_the_database(default_queue_unconsumed, user, settings):
    broker = default_queue_unconsumed
    session = stalled_session(user, settings, resumes=0)
    broker.delete("default")  # its messages are lost, as with a broker restart

    report = sessions_sweep()

    assert report.resumed == 1
    session.refresh_from_db()
    assert session.resumes == 1 and session.status == "queued"
    assert broker.llen("default") > 0  # the unfinished part was sent again


def test_a_session_behind_a_backlog_is_not_given_up(default_queue_unconsumed, user, settings):
    broker = default_queue_unconsumed
    session = stalled_session(user, settings, resumes=settings.JUNCTION_MAX_RESUMES)
    assert broker.llen("default") > 0  # its own messages still wait in the queue

    report = sessions_sweep()
    assert report.waiting == 1 and report.abandoned == 0
    session.refresh_from_db()
    assert session.status == "queued"

    broker.delete("default")  # nothing left to wait for: now it is really stuck
    report = sessions_sweep()
    assert report.abandoned == 1
    session.refresh_from_db()
    assert session.status == "failed"
    assert session.error.startswith("stalled: no progress after")
    assert set(session.task_runs.values_list("status", flat=True)) == {"cancelled"}
