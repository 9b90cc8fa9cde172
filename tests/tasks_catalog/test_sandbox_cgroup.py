"""Per-task cgroup v2 limits of the code sandbox (tasks_catalog/sandbox_cgroup.py).

Where the machine has no usable cgroup v2 (as on a hybrid or v1-only host) the sandbox logs so
once and keeps its per-process rlimits: test_sandbox.py exercises that path with real runs.
The cgroup path is tested here against a directory laid out like cgroupfs, so that it is
checked on every machine; on a host with cgroup v2 the real-hierarchy test runs as well.
"""
from __future__ import annotations

import logging
import subprocess
from pathlib import Path

import pytest

from tasks_catalog import sandbox_cgroup
from tasks_catalog.sandbox_cgroup import TaskCgroup, cgroup_parent, limit_values, probe, task_cgroup

REAL_ROOT = Path("/sys/fs/cgroup")


def fake_hierarchy(root: Path, controllers: str = "cpuset cpu io memory hugetlb pids rdma") -> Path:
    root.mkdir(exist_ok=True)
    (root / "cgroup.controllers").write_text(controllers + "\n")
    (root / "cgroup.subtree_control").write_text("")
    return root


@pytest.fixture(autouse=True)
def fresh_probe(monkeypatch):
    monkeypatch.setattr(sandbox_cgroup, "_checked", {})


def test_no_cgroup_v2_hierarchy_is_reported(tmp_path):
    assert probe(tmp_path / "junction-sandbox") == (None, f"no cgroup v2 hierarchy at {tmp_path}")


def test_a_hierarchy_without_the_controllers_is_reported(tmp_path):
    fake_hierarchy(tmp_path, controllers="hugetlb")
    parent, found = probe(tmp_path / "junction-sandbox")
    assert parent is None
    assert "lacks the memory, pids, cpu controller(s)" in found


def test_the_parent_is_created_with_the_controllers_delegated(tmp_path):
    fake_hierarchy(tmp_path)
    (tmp_path / "junction-sandbox").mkdir()
    (tmp_path / "junction-sandbox" / "cgroup.subtree_control").write_text("")
    parent, found = probe(tmp_path / "junction-sandbox")
    assert parent == tmp_path / "junction-sandbox"
    assert (tmp_path / "cgroup.subtree_control").read_text() == "+memory +pids +cpu"
    assert (parent / "cgroup.subtree_control").read_text() == "+memory +pids +cpu"


def test_without_cgroups_the_worker_says_so_once(tmp_path, settings, caplog):
    settings.JUNCTION_CODE_CGROUP_PARENT = str(tmp_path / "none" / "junction-sandbox")
    with caplog.at_level(logging.INFO, logger="tasks_catalog.sandbox_cgroup"):
        assert cgroup_parent() is None
        assert cgroup_parent() is None
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 1
    assert "limited per process (rlimits) only, not per task" in lines[0]


def test_an_empty_setting_turns_cgroups_off(settings, caplog):
    settings.JUNCTION_CODE_CGROUP_PARENT = ""
    with caplog.at_level(logging.WARNING, logger="tasks_catalog.sandbox_cgroup"):
        assert cgroup_parent() is None
    assert "JUNCTION_CODE_CGROUP_PARENT is empty" in caplog.text


def test_the_limits_cover_every_process_of_the_task():
    assert limit_values(memory_mib=256, file_mib=16, processes=16, cpus=0.5) == {
        "memory.max": str(272 * 1024 * 1024),  # /tmp is a tmpfs: its pages are memory too
        "memory.swap.max": "0",
        "pids.max": "18",  # bwrap's two processes besides the code's
        "cpu.max": "50000 100000",
    }


def test_a_run_gets_its_own_cgroup_with_the_limits_and_it_is_removed_after(tmp_path, settings, monkeypatch):
    parent = tmp_path / "junction-sandbox"
    parent.mkdir()
    monkeypatch.setattr(sandbox_cgroup, "cgroup_parent", lambda: parent)
    seen = {}
    # A fake cgroupfs keeps the files it is given; rmdir needs an empty directory.
    monkeypatch.setattr(Path, "rmdir", lambda self: seen.setdefault("removed", self))
    with task_cgroup(uid=61001, memory_mib=64, file_mib=1, processes=4, cpus=1) as group:
        assert group.path.parent == parent and group.path.name.startswith("run-61001-")
        seen["files"] = {path.name: path.read_text() for path in group.path.iterdir()}
        (group.path / "cgroup.kill").write_text("")  # the kernel provides it (5.14+)
    assert seen["files"] == {"memory.max": str(65 * 1024 * 1024), "pids.max": "6", "cpu.max": "100000 100000"}
    assert (group.path / "cgroup.kill").read_text() == "1"  # every process killed at the end
    assert seen["removed"] == group.path


def test_without_cgroups_a_run_gets_none(monkeypatch):
    monkeypatch.setattr(sandbox_cgroup, "cgroup_parent", lambda: None)
    with task_cgroup(uid=61001, memory_mib=64, file_mib=1, processes=4, cpus=1) as group:
        assert group is None


def test_the_command_is_started_from_inside_the_cgroup(tmp_path):
    group = TaskCgroup(tmp_path)
    (tmp_path / "cgroup.procs").write_text("")
    done = subprocess.run(group.wrap_command(["echo", "started"]), capture_output=True, text=True, env={})
    assert done.stdout == "started\n"
    # The shell wrote "0" (itself) into cgroup.procs before it became the command.
    assert (tmp_path / "cgroup.procs").read_text() == "0\n"


def test_an_oom_kill_is_noticed(tmp_path):
    group = TaskCgroup(tmp_path)
    assert group.oom_killed() is False
    (tmp_path / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
    assert group.oom_killed() is True


@pytest.mark.skipif(not (REAL_ROOT / "cgroup.controllers").is_file()
                    or not {"memory", "pids", "cpu"} <= set((REAL_ROOT / "cgroup.controllers").read_text().split()),
                    reason="this machine has no cgroup v2 with memory, pids and cpu (tested above with a fake)")
def test_on_a_cgroup_v2_machine_a_memory_bomb_across_processes_is_stopped(settings):
    from django.test import override_settings

    from tasks_catalog.base import TaskFailed
    from tasks_catalog.sandbox import run_in_sandbox

    # Each of 4 processes stays under RLIMIT_AS; together they pass the task's memory.max.
    code = (
        "import os, time\n"
        "def main(inputs):\n"
        "    for _ in range(3):\n"
        "        if os.fork() == 0:\n"
        "            break\n"
        "    block = bytearray(100 * 1024 * 1024)\n"
        "    for i in range(0, len(block), 4096):\n"
        "        block[i] = 1\n"
        "    time.sleep(5)\n"
    )
    with override_settings(JUNCTION_CODE_MEMORY_MIB=128, JUNCTION_CODE_MAX_FILE_MIB=1, JUNCTION_CODE_WALL_SECONDS=10):
        with pytest.raises(TaskFailed, match="went past the memory limit"):
            run_in_sandbox(code=code, inputs={})


def test_a_cgroup_that_cannot_be_created_refuses_the_code(tmp_path, monkeypatch):
    from tasks_catalog.base import TaskFailed

    monkeypatch.setattr(sandbox_cgroup, "cgroup_parent", lambda: tmp_path / "gone")
    with pytest.raises(TaskFailed, match="code tasks are refused: the task's cgroup could not be created"):
        with task_cgroup(uid=61001, memory_mib=64, file_mib=1, processes=4, cpus=1):
            raise AssertionError("the code would run without its limits")
