"""The lock files: every package pinned with hashes, compiled from the .in files, used everywhere."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PIN = re.compile(r"^([A-Za-z0-9._-]+)(?:\[[^\]]*\])?\s*==\s*([^\s;#\\]+)")


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def input_pins(path: Path) -> dict[str, str]:
    """`name → version` of a .in file, following `-r` includes."""
    pins: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.startswith("-r "):
            pins.update(input_pins(path.parent / line.split(maxsplit=1)[1]))
        elif match := PIN.match(line):
            pins[normalise(match[1])] = match[2]
    return pins


def lock_entries(path: Path) -> dict[str, tuple[str, list[str]]]:
    """`name → (version, hashes)` of a lock file (requirements joined across continuation lines)."""
    text = re.sub(r"\\\n", " ", path.read_text())
    entries = {}
    for line in text.splitlines():
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        match = PIN.match(line)
        assert match, f"{path.name}: not a pinned requirement: {line[:80]!r}"
        entries[normalise(match[1])] = (match[2], re.findall(r"--hash=sha256:([0-9a-f]{64})", line))
    return entries


@pytest.mark.parametrize("lock", ["requirements.txt", "requirements-dev.txt"])
def test_every_locked_package_is_pinned_with_hashes(lock):
    entries = lock_entries(ROOT / lock)
    assert len(entries) > 30
    assert [name for name, (_, hashes) in entries.items() if not hashes] == []


@pytest.mark.parametrize("source, lock", [
    ("requirements.in", "requirements.txt"),
    ("requirements-dev.in", "requirements-dev.txt"),
])
def test_lock_holds_every_pin_of_its_input(source, lock):
    locked = lock_entries(ROOT / lock)
    stale = {name: version for name, version in input_pins(ROOT / source).items()
             if locked.get(name, (None,))[0] != version}
    assert stale == {}, "run ./scripts/lock"


def test_dev_lock_has_the_runtime_versions():
    runtime, dev = lock_entries(ROOT / "requirements.txt"), lock_entries(ROOT / "requirements-dev.txt")
    assert {name: version for name, (version, _) in runtime.items() if dev.get(name, (None,))[0] != version} == {}


def test_installs_check_the_hashes():
    assert "pip install --require-hashes -r requirements.txt" in (ROOT / "Dockerfile").read_text()
    assert "--require-hashes" in (ROOT / "scripts" / "venv.sh").read_text()


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_scripts_refuse_a_lock_older_than_its_input(tmp_path):
    for name in ("requirements.in", "requirements-dev.in", "requirements.txt", "requirements-dev.txt"):
        shutil.copy(ROOT / name, tmp_path / name)
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "venv.sh", tmp_path / "scripts" / "venv.sh")
    check = ["bash", "-c", "source scripts/venv.sh && check_lock"]
    assert subprocess.run(check, cwd=tmp_path, capture_output=True, text=True).returncode == 0

    with open(tmp_path / "requirements.in", "a") as inputs:
        inputs.write("structlog==25.4.0\n")
    refused = subprocess.run(check, cwd=tmp_path, capture_output=True, text=True)
    assert refused.returncode != 0
    assert "structlog==25.4.0" in refused.stderr and "./scripts/lock" in refused.stderr
