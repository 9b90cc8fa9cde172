"""What the sweeper tells an operator: a log line per action, and its counters."""
from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from config import metrics
from interactions.models import Session
from interactions.sweeper import sessions_sweep
from tests.reliability.test_sweeper import stalled_session

pytestmark = pytest.mark.django_db(transaction=True)


def swept(action: str) -> float:
    for family in text_string_to_metric_families(metrics.render()):
        for sample in family.samples:
            if sample.name == "junction_sweeper_actions_total" and sample.labels == {"action": action}:
                return sample.value
    return 0.0


def events(caplog, name: str) -> list[logging.LogRecord]:
    return [record for record in caplog.records if getattr(record, "event", None) == name]


def test_resume_abandon_and_time_out_are_logged_and_counted(default_queue_unconsumed, user, settings, caplog):
    caplog.set_level(logging.INFO, logger="junction.ops")
    broker = default_queue_unconsumed
    resumed, abandoned, timed_out = swept("resumed"), swept("abandoned"), swept("timed_out")

    session = stalled_session(user, settings, resumes=0)
    broker.delete("default")
    sessions_sweep()
    [line] = events(caplog, "session_resumed")
    assert line.levelno == logging.WARNING and line.session_id == str(session.pk) and line.resume == 1
    assert line.interaction_id == str(session.interaction_id)
    assert swept("resumed") == resumed + 1

    Session.objects.filter(pk=session.pk).update(
        resumes=settings.JUNCTION_MAX_RESUMES, updated_at=timezone.now() - timedelta(days=1))
    broker.delete("default")
    sessions_sweep()
    [line] = events(caplog, "session_abandoned")
    assert line.levelno == logging.ERROR and line.session_id == str(session.pk)
    assert swept("abandoned") == abandoned + 1

    late = stalled_session(user, settings, resumes=0)
    Session.objects.filter(pk=late.pk).update(deadline_at=timezone.now() - timedelta(seconds=1))
    sessions_sweep()
    [line] = events(caplog, "session_timed_out")
    assert line.levelno == logging.WARNING and line.session_id == str(late.pk)
    assert swept("timed_out") == timed_out + 1
