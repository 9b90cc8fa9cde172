"""docker-compose.yml: valid, a healthcheck on every service, the Procfile's commands."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DUMMY = {"SECRET_KEY": "dummy-secret", "JUNCTION_ENCRYPTION_KEYS": "dummy-key", "FLOWER_BASIC_AUTH": "ops:dummy"}


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def procfile() -> dict[str, str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return dict(line.split(": ", 1) for line in lines if line.strip() and not line.startswith("#"))


def test_every_service_has_a_healthcheck():
    services = compose()["services"]
    missing = [name for name, service in services.items() if "healthcheck" not in service]
    assert not missing


def test_services_run_the_procfile_commands():
    services, processes = compose()["services"], procfile()
    assert set(processes) >= {"web", "worker", "code-worker", "beat", "flower"}
    for name in ("worker", "code-worker", "beat", "flower"):
        command = services[name]["command"]
        stem = processes[name].split(" --port")[0]  # flower's port is fixed in the compose file
        assert command.startswith(stem), f"{name}: {command!r} is not the Procfile's {processes[name]!r}"
    assert "exec uvicorn config.asgi:application" in services["web"]["command"]


def test_flower_needs_basic_auth_from_the_environment():
    flower = compose()["services"]["flower"]
    assert "FLOWER_BASIC_AUTH" in flower["environment"]
    assert "${FLOWER_BASIC_AUTH:?" in (ROOT / "docker-compose.yml").read_text()


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose is not installed")
def test_docker_compose_config_is_valid(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in DUMMY}
    env.update(DUMMY)
    checked = subprocess.run(
        ["docker-compose", "--project-directory", str(tmp_path), "-f", str(ROOT / "docker-compose.yml"),
         "config", "-q"], capture_output=True, text=True, env=env, timeout=60,
    )
    assert checked.returncode == 0, checked.stderr
    # Without the flower password the stack refuses to start.
    env.pop("FLOWER_BASIC_AUTH")
    refused = subprocess.run(
        ["docker-compose", "--project-directory", str(tmp_path), "-f", str(ROOT / "docker-compose.yml"),
         "config", "-q"], capture_output=True, text=True, env=env, timeout=60,
    )
    assert refused.returncode != 0 and "FLOWER_BASIC_AUTH" in refused.stderr
