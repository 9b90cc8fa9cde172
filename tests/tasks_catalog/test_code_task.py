"""The `code` task type end to end: through the catalog's test endpoint and real Celery workers.

The sandbox's own containment tests are in test_sandbox.py; here the type runs where it runs in
production: on a worker consuming the `code` queue, from a session started over the API.
"""
from __future__ import annotations

import json

import pytest
from django.conf import settings
from django.test import override_settings

from tasks_catalog.base import TaskContext, TaskFailed
from tasks_catalog.custom_code import Code
from tasks_catalog.registry import task_types
from tests.conftest import make_interaction


SUM = "def main(inputs):\n    return {'sum': sum(inputs['numbers']), 'nested': {'n': len(inputs['numbers'])}}\n"
FAILING = "def main(inputs):\n    return inputs['missing']\n"
ENVIRONMENT = (
    "import os\n"
    "def main(inputs):\n"
    "    seen = dict(os.environ)\n"
    "    for pid in [p for p in os.listdir('/proc') if p.isdigit()]:\n"
    "        try:\n"
    "            seen[pid] = open(f'/proc/{pid}/environ', 'rb').read().decode().replace('\\0', '\\n')\n"
    "        except OSError as exc:\n"
    "            seen[pid] = exc.__class__.__name__\n"
    "    return seen\n"
)
FORK_BOMB = "import os\ndef main(inputs):\n    while True:\n        try:\n            os.fork()\n        except OSError:\n            pass\n"


def test_code_is_registered_on_its_own_queue():
    assert isinstance(task_types.get("code"), Code)
    assert Code.queue == "code"


def test_the_type_runs_main_with_its_inputs():
    output = Code().run({"code": SUM, "inputs": {"numbers": [1, 2, 3]}}, TaskContext(timeout=10))
    assert output == {"sum": 6, "nested": {"n": 3}}


# --- POST /api/task-types/code/test/: on a worker of the `code` queue ---------------------------------


def try_code(api, body, **extra):
    return api.post("/api/task-types/code/test/", {"body": body, **extra}, format="json")


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_the_test_endpoint_runs_code_on_a_code_worker(celery_workers, api):
    response = try_code(api, {"code": SUM, "inputs": {"numbers": [4, 5]}})
    assert response.status_code == 200, response.json()
    result = response.json()
    assert result["status"] == "completed"
    assert result["output"] == {"sum": 9, "nested": {"n": 2}}
    assert result["error"] is None
    assert result["duration_ms"] >= 0


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_the_test_endpoint_never_runs_code_in_the_api_process(celery_workers, api, monkeypatch):
    def in_the_api_process(**kwargs):
        raise AssertionError("the sandbox was started by the API process")

    # Only this (the API's) process is patched; the workers run the real sandbox.
    monkeypatch.setattr("tasks_catalog.custom_code.run_in_sandbox", in_the_api_process)
    result = try_code(api, {"code": "import os\ndef main(inputs):\n    return os.getppid()\n", "inputs": {}}).json()
    assert result["status"] == "completed", result
    assert result["output"] == 1  # its parent is bwrap's init, pid 1 of the sandbox


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_the_test_endpoint_returns_what_the_code_printed_as_logs(celery_workers, api):
    code = "import sys\ndef main(inputs):\n    print('step', 1)\n    print('warn', file=sys.stderr)\n    return 2\n"
    result = try_code(api, {"code": code, "inputs": {}}).json()
    assert result["status"] == "completed" and result["output"] == 2
    assert result["logs"] == "step 1\nwarn"


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_the_test_endpoint_reports_the_traceback_of_failing_code(celery_workers, api):
    response = try_code(api, {"code": FAILING, "inputs": {}})
    assert response.status_code == 200
    result = response.json()
    assert result["status"] == "failed" and result["output"] is None
    assert "Traceback" in result["error"] and "KeyError: 'missing'" in result["error"]
    assert 'File "<code>", line 2, in main' in result["error"]
    assert "return inputs['missing']" in result["error"]


@pytest.mark.django_db
def test_the_test_endpoint_answers_503_when_the_broker_is_down(api, monkeypatch):
    from kombu.exceptions import OperationalError

    from tasks_catalog.tasks import try_task

    def broker_down(*args, **kwargs):
        raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(try_task, "apply_async", broker_down)
    response = try_code(api, {"code": SUM, "inputs": {"numbers": [1]}})
    assert response.status_code == 503
    assert response.json()["code"] == "service_unavailable"
    assert "broker" in response.json()["message"]


@pytest.mark.django_db
def test_the_test_endpoint_fails_the_trial_when_no_code_worker_answers_in_time(api, settings):
    # No worker consumes this run's queues: the trial waits out its timeout plus the grace.
    settings.JUNCTION_HARD_TIMEOUT_GRACE = 0.5
    response = try_code(api, {"code": SUM, "inputs": {"numbers": [1]}}, timeout=0.5)
    assert response.status_code == 200
    result = response.json()
    assert result["status"] == "failed" and result["output"] is None
    assert "no worker consuming the 'code' queue answered within 1 s" in result["error"]
    assert 900 <= result["duration_ms"] < 10_000


@pytest.mark.django_db
def test_the_test_endpoint_refuses_code_when_the_sandbox_is_off():
    # The worker's setting decides; the trial's function is what the worker runs.
    from tasks_catalog.trial import trial_run

    with override_settings(JUNCTION_CODE_SANDBOX="off"):
        result = trial_run(type_key="code", body={"code": SUM, "inputs": {"numbers": [1]}}, integration_id=None,
                           user_id="0", timeout=5)
    assert result["status"] == "failed"
    assert result["error"].startswith("code tasks are refused")


@pytest.mark.django_db
def test_the_test_endpoint_rejects_a_body_without_code(api):
    response = api.post("/api/task-types/code/test/", {"body": {"inputs": {}}}, format="json")
    assert response.status_code == 400
    assert "body.code" in response.json()["details"]


# --- through real Celery workers (queue `code`) ---------------------------------------------------


def run_waiting(api, interaction, body):
    return api.post(f"/api/interactions/{interaction.id}/run/", body, format="json", HTTP_PREFER="wait=30")


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_a_code_task_runs_on_a_worker(celery_workers, api, user):
    interaction = make_interaction(user, active=True, tasks={
        "calc": {"type": "code", "body": {"code": SUM, "inputs": None}},
    })
    response = run_waiting(api, interaction, {"calc": {"inputs": {"numbers": [10, 20, 12]}}})
    assert response.status_code == 200, response.json()
    session = response.json()
    assert session["status"] == "completed"
    assert session["tasks"]["calc"]["output"] == {"sum": 42, "nested": {"n": 3}}


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_a_failing_code_task_fails_its_session_with_the_traceback(celery_workers, api, user):
    interaction = make_interaction(user, active=True, tasks={
        "calc": {"type": "code", "body": {"code": FAILING, "inputs": {}}},
    })
    session = run_waiting(api, interaction, {}).json()
    assert session["status"] == "failed"
    assert session["tasks"]["calc"]["status"] == "failed"
    assert "KeyError: 'missing'" in session["tasks"]["calc"]["error"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_the_workers_environment_does_not_reach_code(celery_workers, api, user):
    interaction = make_interaction(user, active=True, tasks={
        "env": {"type": "code", "body": {"code": ENVIRONMENT, "inputs": {}}},
    })
    session = run_waiting(api, interaction, {}).json()
    assert session["status"] == "completed", session
    seen = json.dumps(session["tasks"]["env"]["output"])
    # The workers run with these in their environment (tests/workers.py).
    for secret in [settings.SECRET_KEY, *settings.JUNCTION_ENCRYPTION_KEYS, settings.CELERY_BROKER_URL,
                   settings.DATABASES["default"]["NAME"]]:
        assert secret not in seen


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_a_fork_bomb_on_a_worker_is_contained_and_the_worker_keeps_working(celery_workers, api, user):
    bomb = make_interaction(user, active=True, tasks={
        "bomb": {"type": "code", "body": {"code": FORK_BOMB, "inputs": {}}, "timeout": 3},
    })
    session = run_waiting(api, bomb, {}).json()
    assert session["status"] == "failed"
    assert session["tasks"]["bomb"]["status"] == "failed"
    assert session["tasks"]["bomb"]["error"]

    calc = make_interaction(user, active=True, tasks={
        "calc": {"type": "code", "body": {"code": SUM, "inputs": {"numbers": [1, 1]}}},
    })
    for _ in range(4):  # enough to reach every worker process
        session = run_waiting(api, calc, {}).json()
        assert session["status"] == "completed", session
        assert session["tasks"]["calc"]["output"] == {"sum": 2, "nested": {"n": 2}}
    assert all(process.poll() is None for process in celery_workers.processes)


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_a_result_postgresql_cannot_store_fails_the_task_instead_of_hanging(celery_workers, api, user):
    interaction = make_interaction(user, active=True, tasks={
        "nul": {"type": "code", "body": {"code": "def main(inputs):\n    return 'a\\0b'\n", "inputs": {}}},
    })
    session = run_waiting(api, interaction, {}).json()
    assert session["status"] == "failed", session
    assert "NUL character" in session["tasks"]["nul"]["error"]


def test_a_result_nested_past_the_depth_limit_fails_saying_so(settings):
    deep = "def main(inputs):\n    value = []\n    for _ in range(300):\n        value = [value]\n    return value\n"
    with pytest.raises(TaskFailed, match="nested deeper than"):
        Code().run({"code": deep, "inputs": {}}, TaskContext(timeout=10))


@pytest.mark.slow
def test_each_worker_says_once_at_start_up_how_code_is_limited(celery_workers):
    import os

    for index in range(celery_workers.count):
        log = (celery_workers.log_dir / f"{celery_workers.name}-{os.getpid()}-{index}.log").read_text()
        lines = [line for line in log.splitlines() if "code sandbox: " in line]
        assert lines, log
        # Per task with cgroup v2, or the warning that only per-process rlimits apply.
        assert "per task" in lines[0]


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_what_a_code_task_printed_is_kept_with_its_record(celery_workers, api, user):
    code = "import sys\ndef main(inputs):\n    print('fetched', 3)\n    print('slow', file=sys.stderr)\n    return 3\n"
    interaction = make_interaction(user, active=True, tasks={
        "calc": {"type": "code", "body": {"code": code, "inputs": {}}},
        "quiet": {"type": "code", "body": {"code": SUM, "inputs": {"numbers": [1]}}},
    })
    waited = run_waiting(api, interaction, {}).json()
    assert waited["status"] == "completed", waited
    read = api.get(f"/api/sessions/{waited['id']}/").json()
    for session in (waited, read):
        assert session["tasks"]["calc"]["output"] == 3  # the output stays what main() returned
        assert session["tasks"]["calc"]["logs"] == "fetched 3\nslow"
        assert "logs" not in session["tasks"]["quiet"]  # printed nothing
