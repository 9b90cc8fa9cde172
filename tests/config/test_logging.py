"""Logs: JSON or text lines carrying the request, user, interaction, session and task."""
from __future__ import annotations

import io
import os
import json
import logging
import logging.config

import pytest
from django.conf import settings

from config import logcontext, oplog
from tests.conftest import make_interaction


@pytest.fixture
def lines():
    """The lines the root logger writes with LOGGING's JSON handler, parsed."""
    stream = io.StringIO()
    config = dict(settings.LOGGING)
    handler = logging.StreamHandler(stream)
    formatter_conf = config["formatters"]["json"]
    from pythonjsonlogger.json import JsonFormatter

    handler.setFormatter(JsonFormatter(formatter_conf["format"], rename_fields=formatter_conf["rename_fields"],
                                       timestamp=formatter_conf["timestamp"]))
    handler.addFilter(logcontext.ContextFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    previous = root.level
    root.setLevel(logging.INFO)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    root.removeHandler(handler)
    root.setLevel(previous)


def test_a_request_line_carries_request_user_and_interaction(api, user, lines, monkeypatch):
    interaction = make_interaction(user, active=True)
    from interactions import views

    def spy(*args, **kwargs):
        logging.getLogger("junction.test").info("inside the view")
        return original(*args, **kwargs)

    original = views.InteractionViewSet.retrieve
    monkeypatch.setattr(views.InteractionViewSet, "retrieve", spy)
    response = api.get(f"/api/interactions/{interaction.id}/", HTTP_X_REQUEST_ID="req-42")
    assert response.status_code == 200
    assert response["X-Request-ID"] == "req-42"
    [line] = [line for line in lines() if line["message"] == "inside the view"]
    assert line["request_id"] == "req-42"
    assert line["user_id"] == str(user.id)
    assert line["interaction_id"] == str(interaction.id)
    assert line["level"] == "INFO" and line["logger"] == "junction.test" and "time" in line


def test_a_strange_request_id_is_replaced(api):
    response = api.get("/api/auth/me/", HTTP_X_REQUEST_ID="x" * 65)
    assert len(response["X-Request-ID"]) == 32 and response["X-Request-ID"] != "x" * 65


def test_the_context_ends_with_the_request(api, lines):
    api.get("/api/auth/me/")
    logging.getLogger("junction.test").info("after")
    [line] = [line for line in lines() if line["message"] == "after"]
    assert "request_id" not in line and "user_id" not in line


def test_a_celery_task_line_carries_its_session_and_task(lines):
    logcontext.task_started(task_name="junction.run_task", task_id="c-1", args=["s-1", "fetch", "v-1"], kwargs={})
    try:
        logging.getLogger("junction.test").warning("in the task")
    finally:
        logcontext.task_ended()
    logging.getLogger("junction.test").warning("after the task")
    inside, after = [line for line in lines() if line["message"] in ("in the task", "after the task")]
    assert (inside["session_id"], inside["task"], inside["celery_task_id"]) == ("s-1", "fetch", "c-1")
    assert "session_id" not in after and "task" not in after


def test_the_celery_signals_set_the_context(lines):
    from celery.signals import task_postrun, task_prerun

    from interactions.tasks import finish_session

    task_prerun.send(sender=finish_session, task_id="c-2", task=finish_session, args=("s-2",), kwargs={})
    logging.getLogger("junction.test").info("finishing")
    task_postrun.send(sender=finish_session, task_id="c-2", task=finish_session, args=("s-2",), kwargs={})
    [line] = [line for line in lines() if line["message"] == "finishing"]
    assert line["session_id"] == "s-2"


def test_operator_events_have_their_level_and_fields(lines):
    oplog.session_started("s-3", "i-3", 7)
    oplog.session_finished("s-3", "completed", 41.7, interaction_id="i-3")
    oplog.session_finished("s-4", "timed_out", 9000)
    oplog.task_failed("s-3", "fetch", "http_request", "boom " * 200, 2)
    oplog.task_retry("s-3", "fetch", "http_request", "503", 1, 1.5)
    oplog.task_taken_over("s-3", "fetch", 2)
    oplog.session_resumed("s-3", 1)
    by_event = {(line["event"], line.get("session_id")): line for line in lines() if "event" in line}
    started = by_event[("session_started", "s-3")]
    assert started["level"] == "INFO" and started["user_id"] == "7" and started["interaction_id"] == "i-3"
    finished = by_event[("session_finished", "s-3")]
    assert (finished["level"], finished["status"], finished["duration_ms"]) == ("INFO", "completed", 41)
    assert by_event[("session_finished", "s-4")]["level"] == "WARNING"
    failed = by_event[("task_failed", "s-3")]
    assert (failed["level"], failed["task"], failed["task_type"], failed["attempt"]) == (
        "WARNING", "fetch", "http_request", 2)
    assert len(failed["error"]) <= oplog.ERROR_CHARS + 1
    assert by_event[("task_retry", "s-3")]["countdown_s"] == 1.5
    assert by_event[("task_taken_over", "s-3")]["level"] == "WARNING"
    assert by_event[("session_resumed", "s-3")]["resume"] == 1


def test_the_text_format_appends_the_context():
    formatter = logcontext.TextFormatter("%(levelname)s %(message)s")
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello", None, None)
    record.session_id, record.task = "s-5", "fetch"
    assert formatter.format(record) == "INFO hello [session_id=s-5 task=fetch]"


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_log_format_setting_chooses_the_formatter(fmt, monkeypatch):
    import subprocess
    import sys

    env = {"LOG_FORMAT": fmt, "DJANGO_SETTINGS_MODULE": "config.test_settings"}
    code = ("import django, logging; django.setup(); "
            "logging.getLogger('junction.test').warning('hi', extra={'session_id': 's-6'})")
    import os

    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**os.environ, **env}, cwd=settings.BASE_DIR, timeout=60)
    line = result.stderr.strip().splitlines()[-1]
    if fmt == "json":
        assert json.loads(line)["session_id"] == "s-6"
    else:
        assert line.endswith("WARNING junction.test hi [session_id=s-6]")


def test_bad_log_format_is_refused():
    import os
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", "import django; django.setup()"], capture_output=True, text=True,
                            env={**os.environ, "LOG_FORMAT": "xml", "DJANGO_SETTINGS_MODULE": "config.test_settings"},
                            cwd=settings.BASE_DIR, timeout=60)
    assert result.returncode != 0 and "LOG_FORMAT" in result.stderr


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_worker_lines_are_json_with_the_session_and_task(user, api):
    from tests.conftest import finished
    from tests.workers import WorkerPool, flush_redis

    from config.celery import app

    # Workers the rest of the suite started would take the task: pause their consumers.
    others = sorted(name for reply in app.control.ping(timeout=0.5) or [] for name in reply)
    for queue in ("default", "code"):
        if others:
            app.control.cancel_consumer(queue, destination=others, reply=True, timeout=2)
    flush_redis()
    pool = WorkerPool(count=1, concurrency=1, name="logjson",
                      extra_env={"LOG_FORMAT": "json", "LOG_LEVEL": "INFO"}).start()
    try:
        interaction = make_interaction(user, tasks={"pause": {"type": "delay", "body": {"seconds": 0}}}, active=True)
        run = api.post(f"/api/interactions/{interaction.id}/run/", {}, format="json")
        session = finished(api, run.json()["id"])
        assert session["status"] == "completed"
    finally:
        pool.stop()
        for queue in ("default", "code"):
            if others:
                app.control.add_consumer(queue, destination=others, reply=True, timeout=2)
    logs = list(pool.log_dir.glob(f"logjson-{os.getpid()}-*.log"))
    lines = [json.loads(line) for path in logs for line in path.read_text().splitlines() if line.startswith("{")]
    assert lines, "the worker wrote no JSON line"
    mine = [line for line in lines if line.get("session_id") == session["id"]]
    assert mine and all(line.get("task") == "pause" for line in mine if "celery_task_id" in line)
