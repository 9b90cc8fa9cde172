"""Limit one code sandbox as a whole with a cgroup v2 of its own: memory, processes, CPU.

rlimits count per process (RLIMIT_AS) or per uid (RLIMIT_NPROC); a cgroup counts every
process of one task together, and can kill them all at once. Each run gets
`<JUNCTION_CODE_CGROUP_PARENT>/run-<uid>-<random>` with `memory.max`, `memory.swap.max`,
`pids.max` and `cpu.max`; bwrap is started inside it (`wrap_command`), so every process of
the sandbox is born there. The cgroup is killed (`cgroup.kill`) and removed when the run ends.

Where the machine has no usable cgroup v2 (no unified hierarchy, controllers bound to v1, or
a parent that cannot be created), `cgroup_parent()` returns None, the worker logs that once,
and the sandbox keeps only its per-process rlimits.
"""
from __future__ import annotations

import logging
import os
import secrets
import shutil
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from tasks_catalog.base import TaskFailed

logger = logging.getLogger(__name__)

CONTROLLERS = ("memory", "pids", "cpu")
MIB = 1024 * 1024
CPU_PERIOD_US = 100_000
# bwrap's own process outside the pid namespace and its init inside it also count in pids.max.
BWRAP_PROCESSES = 2

_checked: dict[str, Path | None] = {}


def _controllers(path: Path) -> set[str]:
    try:
        return set((path / "cgroup.controllers").read_text().split())
    except OSError:
        return set()


def _enable(path: Path) -> None:
    """Let `path`'s children use CONTROLLERS (raises OSError when the kernel refuses)."""
    enabled = set((path / "cgroup.subtree_control").read_text().split())
    missing = [name for name in CONTROLLERS if name not in enabled]
    if missing:
        (path / "cgroup.subtree_control").write_text(" ".join(f"+{name}" for name in missing))


def probe(parent: Path) -> tuple[Path | None, str]:
    """Set up `parent` for per-task cgroups; return (parent or None, what was found)."""
    root = parent.parent
    if not (root / "cgroup.controllers").is_file():
        return None, f"no cgroup v2 hierarchy at {root}"
    missing = [name for name in CONTROLLERS if name not in _controllers(root)]
    if missing:
        return None, f"the cgroup v2 hierarchy at {root} lacks the {', '.join(missing)} controller(s)"
    try:
        _enable(root)
        parent.mkdir(exist_ok=True)
        _enable(parent)
    except OSError as exc:
        return None, f"cannot delegate {', '.join(CONTROLLERS)} to {parent}: {exc}"
    return parent, f"each code task gets its own cgroup under {parent}"


def cgroup_parent() -> Path | None:
    """Return the parent of the per-task cgroups, or None when cgroups are off or unusable.

    Probed once per process and setting; the outcome is logged then (the start-up line that
    says whether limits apply per task or only per process).
    """
    configured: str = settings.JUNCTION_CODE_CGROUP_PARENT or ""
    if configured not in _checked:
        if not configured:
            parent, found = None, "JUNCTION_CODE_CGROUP_PARENT is empty"
        else:
            parent, found = probe(Path(configured))
        _checked[configured] = parent
        if parent is None:
            logger.warning("code sandbox: %s; memory and processes are limited per process (rlimits) only, "
                           "not per task", found)
        else:
            logger.info("code sandbox: %s (memory, processes and CPU limited per task)", found)
    return _checked[configured]


@dataclass(frozen=True)
class TaskCgroup:
    path: Path

    def wrap_command(self, command: list[str]) -> list[str]:
        """Return `command` started from inside this cgroup (a shell moves itself in, then execs)."""
        shell = shutil.which("sh", path="/usr/bin:/bin") or "/bin/sh"
        return [shell, "-c", 'echo 0 > "$0" && exec "$@"', str(self.path / "cgroup.procs"), *command]

    def oom_killed(self) -> bool:
        """Whether the kernel killed a process of this cgroup for going past memory.max."""
        try:
            events = dict(line.split() for line in (self.path / "memory.events").read_text().splitlines())
        except (OSError, ValueError):
            return False
        return int(events.get("oom_kill", 0)) > 0

    def pids(self) -> list[int]:
        try:
            return [int(pid) for pid in (self.path / "cgroup.procs").read_text().split()]
        except (OSError, ValueError):
            return []

    def kill(self) -> None:
        """SIGKILL every process of the cgroup (cgroup.kill, or one by one on kernels before 5.14)."""
        kill_file = self.path / "cgroup.kill"
        if kill_file.exists():
            try:
                kill_file.write_text("1")
                return
            except OSError:
                pass
        for pid in self.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def limit_values(*, memory_mib: int, file_mib: int, processes: int, cpus: float) -> dict[str, str]:
    """The files written into a task's cgroup. /tmp is a tmpfs whose pages count as memory too."""
    return {
        "memory.max": str((memory_mib + file_mib) * MIB),
        "memory.swap.max": "0",
        "pids.max": str(processes + BWRAP_PROCESSES),
        "cpu.max": f"{int(cpus * CPU_PERIOD_US)} {CPU_PERIOD_US}",
    }


@contextmanager
def task_cgroup(*, uid: int, memory_mib: int, file_mib: int, processes: int, cpus: float) -> Iterator[TaskCgroup | None]:
    """Create this run's cgroup with its limits (None without cgroup v2); kill and remove it after."""
    parent = cgroup_parent()
    if parent is None:
        yield None
        return
    path = parent / f"run-{uid}-{secrets.token_hex(4)}"
    try:
        path.mkdir()
    except OSError as exc:
        raise TaskFailed(f"code tasks are refused: the task's cgroup could not be created: {exc}") from None
    group = TaskCgroup(path)
    try:
        try:
            for name, value in limit_values(memory_mib=memory_mib, file_mib=file_mib, processes=processes,
                                            cpus=cpus).items():
                limit_file = path / name
                if limit_file.exists() or name != "memory.swap.max":  # no swap accounting: nothing to cap
                    limit_file.write_text(value)
        except OSError as exc:  # never run the code with fewer limits than announced
            raise TaskFailed(f"code tasks are refused: the task's cgroup limits could not be set: {exc}") from None
        yield group
    finally:
        group.kill()
        deadline = time.monotonic() + 5
        while group.pids() and time.monotonic() < deadline:
            time.sleep(0.01)
        try:
            path.rmdir()
        except OSError as exc:  # still populated: left for the next start-up's operator to see
            logger.warning("code sandbox: cannot remove cgroup %s: %s", path, exc)
