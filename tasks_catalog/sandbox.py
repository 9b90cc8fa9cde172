"""Run untrusted Python in a bubblewrap sandbox; refuse to run it any other way.

`run_in_sandbox(code=..., inputs=...)` starts, per call, one process tree:

    bwrap (new pid, net, ipc, uts and cgroup namespaces; an empty root with only the Python
           installation and the shared libraries, read-only; private /tmp; empty environment)
      └ setpriv (drops to an unprivileged uid from a reserved range, no capabilities,
                 no new privileges)
          └ python -I -S -B -c RUNNER (sets rlimits, reads {code, inputs} from stdin, calls
                                       main(inputs), writes the JSON result to a dedicated fd)

The parent enforces what rlimits cannot: a wall-clock deadline (a sleeping loop uses no CPU)
and an output cap applied while the pipes are read (a script prints tens of MB in a fraction
of a second). Whenever anything is off — bwrap missing, the setting `off`, the sandbox failing
to start, the child turning out to be root — the call raises SandboxUnavailable and the code
never runs. There is no unsandboxed fallback, on purpose.

Each running sandbox holds one uid of the range `JUNCTION_CODE_SANDBOX_UID` …
`+ JUNCTION_CODE_SANDBOX_UID_COUNT - 1` exclusively (a lock file per uid), because the kernel
counts RLIMIT_NPROC per uid across the whole machine: with a uid of its own, a fork bomb in one
sandbox cannot starve another of processes, and the uid is handed out again only once every
process of the previous holder is gone.
"""
from __future__ import annotations

import fcntl
import json
import os
import random
import selectors
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings

from config.jsonsize import JsonTooDeep, loads_bounded
from tasks_catalog.base import TaskFailed
from tasks_catalog.sandbox_cgroup import task_cgroup
from tasks_catalog.seccomp_filter import SeccompUnavailable, program_fd

READY = b"junction-sandbox-ready\n"



@dataclass
class CapturedLogs:
    """What code run inside `capturing_logs()` printed; None when no code ran."""

    text: str | None = None


_capture: ContextVar[CapturedLogs | None] = ContextVar("sandbox_logs", default=None)


@contextmanager
def capturing_logs() -> Iterator[CapturedLogs]:
    """Collect what the code run in this block prints (stdout and stderr as written).

    At most JUNCTION_CODE_MAX_LOG_BYTES characters are kept, the last ones. The caller keeps
    them beside the task's result (docs/sandbox.md, "Printed output"): the task type's
    output stays what main() returned.
    """
    captured = CapturedLogs()
    token = _capture.set(captured)
    try:
        yield captured
    finally:
        _capture.reset(token)

# Runs inside the sandbox as the unprivileged uid. Kept here as a string (passed with -c) so
# that no file of the project has to be mounted into the sandbox.
RUNNER = r'''
import json, linecache, os, resource, sys, traceback

limits = json.loads(sys.argv[1])
result = os.fdopen(int(sys.argv[2]), "wb", buffering=0)

def finish(message):
    result.write(json.dumps(message).encode())
    result.close()
    sys.exit(0)

# Fail closed: never run user code with privileges, whatever happened outside.
with open("/proc/self/status") as status:
    fields = dict(line.split(":", 1) for line in status if ":" in line)
if 0 in os.getresuid() or 0 in os.getresgid() or int(fields["CapEff"], 16) or int(fields["CapPrm"], 16):
    sys.stderr.write("sandbox runner: refusing to run with privileges\n")
    sys.exit(70)
if fields.get("Seccomp", "").strip() != "2" or fields.get("NoNewPrivs", "").strip() != "1":
    sys.stderr.write("sandbox runner: refusing to run without the seccomp filter\n")
    sys.exit(70)

for name, soft, hard in limits:
    resource.setrlimit(getattr(resource, name), (soft, hard))
result.write(b"junction-sandbox-ready\n")

STDLIB = os.path.dirname(os.__file__) + "/"

def user_traceback(exc):
    """The traceback without the runner's frames, standard library paths shown as <stdlib>/…"""
    summary = traceback.TracebackException(type(exc), exc, exc.__traceback__, compact=True)
    seen, pending = set(), [summary]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        frames = [frame for frame in current.stack if frame.filename != "<string>"]
        for frame in frames:
            if frame.filename.startswith(STDLIB):
                frame.line  # read the source line while its real path is known
                frame.filename = "<stdlib>/" + frame.filename[len(STDLIB):]
        current.stack = traceback.StackSummary.from_list(frames)
        pending += [link for link in (current.__cause__, current.__context__) if link is not None]
    return "".join(summary.format()).rstrip()

# Line by line, so that the logs keep the order in which stdout and stderr were written.
sys.stdout.reconfigure(line_buffering=True)
envelope = json.load(sys.stdin)
source = envelope["code"]
# Lets tracebacks show the user's lines.
linecache.cache["<code>"] = (len(source), None, source.splitlines(True), "<code>")
namespace = {"__name__": "__main__", "__builtins__": __builtins__}
try:
    exec(compile(source, "<code>", "exec"), namespace)
    main = namespace.get("main")
    if not callable(main):
        finish({"error": "the code does not define a function main(inputs)"})
    value = main(envelope["inputs"])
except MemoryError:
    finish({"error": "MemoryError: the memory limit was exceeded"})
except SystemExit as exc:
    finish({"error": f"the code called exit({exc.code!r}) instead of returning from main()"})
except BaseException as exc:
    finish({"error": user_traceback(exc)})
try:
    payload = json.dumps({"ok": value}, allow_nan=False)
except (TypeError, ValueError, RecursionError) as exc:
    finish({"error": f"main() returned a value that is not JSON-serialisable: {exc}"})
result.write(payload.encode())
result.close()
'''


class SandboxUnavailable(TaskFailed):
    """The sandbox cannot be set up here, so the code was not run."""


@dataclass(frozen=True)
class Limits:
    cpu_seconds: int
    memory_mib: int
    wall_seconds: float
    output_bytes: int
    processes: int
    open_files: int
    file_mib: int

    @classmethod
    def from_settings(cls) -> "Limits":
        return cls(
            cpu_seconds=settings.JUNCTION_CODE_CPU_SECONDS,
            memory_mib=settings.JUNCTION_CODE_MEMORY_MIB,
            wall_seconds=settings.JUNCTION_CODE_WALL_SECONDS,
            output_bytes=settings.JUNCTION_CODE_MAX_OUTPUT_BYTES,
            processes=settings.JUNCTION_CODE_MAX_PROCESSES,
            open_files=settings.JUNCTION_CODE_MAX_OPEN_FILES,
            file_mib=settings.JUNCTION_CODE_MAX_FILE_MIB,
        )

    def rlimits(self) -> list[tuple[str, int, int]]:
        """(name, soft, hard) for the runner; the CPU hard limit kills one second after SIGXCPU."""
        mib = 1024 * 1024
        return [
            ("RLIMIT_CPU", self.cpu_seconds, self.cpu_seconds + 1),
            ("RLIMIT_AS", self.memory_mib * mib, self.memory_mib * mib),
            ("RLIMIT_NPROC", self.processes, self.processes),
            ("RLIMIT_NOFILE", self.open_files, self.open_files),
            ("RLIMIT_FSIZE", self.file_mib * mib, self.file_mib * mib),
            ("RLIMIT_CORE", 0, 0),
        ]


def python_paths() -> tuple[Path, Path]:
    """Return the base (non-virtualenv) Python interpreter and the prefix it lives in.

    User code gets the standard library only: the virtualenv, and with it the project's
    dependencies, stays outside.
    """
    prefix = Path(sys.base_prefix)
    executable = Path(sysconfig.get_config_var("BINDIR") or prefix / "bin") / (
        f"python{sys.version_info.major}.{sys.version_info.minor}"
    )
    if not executable.is_file() or not executable.is_relative_to(prefix):
        executable = prefix / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    return executable, prefix


def _dirs_for(path: Path, made: set[Path]) -> list[str]:
    """`--dir` arguments creating each missing ancestor of `path` with mode 0755.

    bwrap would create them itself, but with mode 0700 when it runs as root, which the
    unprivileged uid could not traverse (the pyenv prefix lives under /root).
    """
    args: list[str] = []
    for parent in reversed(path.parents):
        if parent != Path("/") and parent not in made:
            made.add(parent)
            args += ["--dir", str(parent)]
    return args


def bwrap_command(*, bwrap: str, uid: int, result_fd: int, seccomp_fd: int, limits: Limits) -> list[str]:
    """Return the full command line that runs RUNNER in the sandbox as `uid`.

    `seccomp_fd` holds the BPF program (tasks_catalog/seccomp_filter.py) that bwrap loads
    just before it starts setpriv, so that it applies to everything the code runs.
    """
    executable, prefix = python_paths()
    setpriv = shutil.which("setpriv", path="/usr/bin:/bin")
    if setpriv is None:
        raise SandboxUnavailable("code tasks are refused: setpriv (util-linux) is not installed, "
                                 "so the sandbox cannot drop to an unprivileged user")
    made: set[Path] = set()
    mounts: list[str] = []

    def ro_bind(path: Path) -> None:
        mounts.extend(_dirs_for(path, made) + ["--ro-bind", str(path), str(path)])
        made.add(path)

    # Shared libraries for the interpreter, its extension modules and setpriv. On merged-/usr
    # systems /lib and /lib64 are symlinks into /usr and are recreated as such.
    for top in ("/usr/lib", "/usr/lib64", "/lib", "/lib64"):
        path = Path(top)
        if path.is_symlink():
            mounts += ["--symlink", os.readlink(path), top]
        elif path.is_dir():
            ro_bind(path)
    ro_bind(Path(setpriv))
    ro_bind(executable)
    # The standard library (and libpython, which the interpreter finds through an absolute
    # RUNPATH, hence the same path inside as outside). site-packages is masked with an empty,
    # read-only tmpfs: -I -S keeps it off sys.path anyway, and nothing there is the user's.
    library = prefix / "lib"
    ro_bind(library)
    site_packages = Path(sysconfig.get_path("purelib", vars={"base": str(prefix)}))
    if site_packages.is_dir() and site_packages.is_relative_to(library):
        mounts += ["--tmpfs", str(site_packages), "--remount-ro", str(site_packages)]

    return [
        bwrap,
        "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
        # No user namespace: bwrap runs as real root, so that setpriv can switch to a real
        # unprivileged uid, the only kind RLIMIT_NPROC applies to.
        "--die-with-parent", "--new-session",
        "--clearenv", "--setenv", "LANG", "C.UTF-8", "--setenv", "PYTHONDONTWRITEBYTECODE", "1",
        "--setenv", "PYTHONNOUSERSITE", "1", "--setenv", "HOME", "/tmp",
        "--hostname", "sandbox",
        *mounts,
        "--proc", "/proc", "--dev", "/dev",
        "--size", str(limits.file_mib * 1024 * 1024), "--perms", "1777", "--tmpfs", "/tmp",
        "--chdir", "/tmp",
        "--remount-ro", "/",
        "--seccomp", str(seccomp_fd),
        # Only what setpriv needs to change uid; setresuid to a non-zero uid clears them again.
        "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--cap-add", "CAP_SETPCAP",
        setpriv, f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--no-new-privs",
        "--inh-caps=-all", "--bounding-set=-all", "--",
        str(executable), "-I", "-S", "-B", "-c", RUNNER, json.dumps(limits.rlimits()), str(result_fd),
    ]


def _uid_has_processes(uid: int) -> bool:
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    return True
            except FileNotFoundError:
                continue
    return False


@contextmanager
def claimed_uid() -> Iterator[int]:
    """Hold one uid of the sandbox range exclusively; raise SandboxUnavailable when all are busy.

    The lock is released only once no process of that uid is left, so the next holder starts
    with a clean process count.
    """
    lock_dir = Path(settings.JUNCTION_CODE_SANDBOX_LOCK_DIR)
    lock_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    first, count = settings.JUNCTION_CODE_SANDBOX_UID, settings.JUNCTION_CODE_SANDBOX_UID_COUNT
    for uid in random.sample(range(first, first + count), count):
        handle = open(lock_dir / f"uid-{uid}.lock", "a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        try:
            if _uid_has_processes(uid):  # left over by a holder that died: skip it
                continue
            yield uid
            deadline = time.monotonic() + 5
            while _uid_has_processes(uid) and time.monotonic() < deadline:
                time.sleep(0.02)
            return
        finally:
            handle.close()
    raise TaskFailed(f"all {count} sandbox slots of this worker are busy; try again later", transient=True)


@dataclass
class Outcome:
    returncode: int | None = None
    ready: bool = False
    result: bytes = b""
    output: bytes = b""  # stdout and stderr, interleaved as read
    timed_out: bool = False
    output_exceeded: bool = False
    oom_killed: bool = False  # by the task's cgroup (memory.max)


def _kill(process: subprocess.Popen) -> None:
    """Kill bwrap's process group; --die-with-parent and the pid namespace take the rest."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def _communicate(process: subprocess.Popen, stdin: bytes, result_fd: int, *, wall: float, cap: int) -> Outcome:
    """Feed stdin and read stdout, stderr and the result fd until EOF, the deadline or the cap."""
    outcome = Outcome()
    deadline = time.monotonic() + wall
    selector = selectors.DefaultSelector()
    assert process.stdout is not None and process.stderr is not None and process.stdin is not None  # piped
    for fd in (process.stdout.fileno(), process.stderr.fileno(), result_fd):
        os.set_blocking(fd, False)
        selector.register(fd, selectors.EVENT_READ)
    pending = memoryview(stdin)
    stdin_fd = process.stdin.fileno()
    os.set_blocking(stdin_fd, False)
    selector.register(stdin_fd, selectors.EVENT_WRITE)
    open_reads = 3
    try:
        while open_reads:
            left = deadline - time.monotonic()
            if left <= 0:
                outcome.timed_out = True
                break
            for key, _ in selector.select(timeout=left):
                fd = key.fd
                if fd == stdin_fd:
                    try:
                        pending = pending[os.write(fd, pending[:65536]):]
                    except BrokenPipeError:
                        pending = pending[:0]
                    if not pending:
                        selector.unregister(fd)
                        process.stdin.close()
                    continue
                chunk = os.read(fd, 65536)
                if not chunk:
                    selector.unregister(fd)
                    open_reads -= 1
                elif fd == result_fd:
                    outcome.result += chunk
                else:
                    outcome.output += chunk
                if len(outcome.result) + len(outcome.output) > cap + len(READY):
                    outcome.output_exceeded = True
                    return outcome
        if not outcome.timed_out:
            try:
                outcome.returncode = process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                outcome.timed_out = True
        return outcome
    finally:
        selector.close()
        if process.returncode is None:
            _kill(process)
        outcome.returncode = process.returncode
        if outcome.result.startswith(READY):
            outcome.ready = True
            outcome.result = outcome.result[len(READY):]


def _tail(data: bytes, limit: int = 2000) -> str:
    text = data.decode("utf-8", "replace").strip()
    if len(text) <= limit:
        return text
    return "…" + text[-limit:] if limit else ""


def run_in_sandbox(*, code: str, inputs: Any, timeout: float | None = None) -> Any:
    """Run `main(inputs)` from `code` in the sandbox; return its JSON result.

    Raises SandboxUnavailable (never running the code) when the sandbox cannot be set up, and
    TaskFailed for everything the code did wrong: an exception (with its traceback), a limit
    hit, a result that is not JSON.
    """
    if settings.JUNCTION_CODE_SANDBOX != "bwrap":
        raise SandboxUnavailable("code tasks are refused: the sandbox is turned off on this server "
                                 "(JUNCTION_CODE_SANDBOX=off)")
    bwrap = shutil.which(settings.JUNCTION_CODE_SANDBOX_BWRAP)
    if bwrap is None:
        raise SandboxUnavailable(f"code tasks are refused: bubblewrap ({settings.JUNCTION_CODE_SANDBOX_BWRAP!r}) "
                                 "is not installed on this worker")
    if os.geteuid() != 0:
        raise SandboxUnavailable("code tasks are refused: the worker must run as root to start the sandbox "
                                 "and switch to its unprivileged uid")
    limits = Limits.from_settings()
    wall = min(limits.wall_seconds, timeout) if timeout else limits.wall_seconds
    stdin = json.dumps({"code": code, "inputs": inputs}).encode()

    with claimed_uid() as uid, task_cgroup(
        uid=uid, memory_mib=limits.memory_mib, file_mib=limits.file_mib, processes=limits.processes,
        cpus=settings.JUNCTION_CODE_CPUS,
    ) as cgroup:
        result_read, result_write = os.pipe()
        seccomp_read = -1
        try:
            try:
                seccomp_read = program_fd()
            except SeccompUnavailable as exc:
                raise SandboxUnavailable(f"code tasks are refused: the seccomp filter cannot be built: {exc}") from None
            command = bwrap_command(bwrap=bwrap, uid=uid, result_fd=result_write, seccomp_fd=seccomp_read,
                                    limits=limits)
            if cgroup is not None:
                command = cgroup.wrap_command(command)
            try:
                process = subprocess.Popen(
                    command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                    pass_fds=(result_write, seccomp_read), env={}, cwd="/", start_new_session=True,
                )
            except OSError as exc:
                raise SandboxUnavailable(f"code tasks are refused: bubblewrap could not be started: {exc}") from None
            try:
                os.close(result_write)
                result_write = -1
                os.close(seccomp_read)
                seccomp_read = -1
                with process:
                    outcome = _communicate(process, stdin, result_read, wall=wall, cap=limits.output_bytes)
            finally:
                # Also when Celery's soft time limit interrupts us anywhere in between.
                if process.returncode is None:
                    _kill(process)
            outcome.oom_killed = cgroup is not None and cgroup.oom_killed()
        finally:
            for fd in (result_read, result_write, seccomp_read):
                if fd != -1:
                    os.close(fd)
    if (captured := _capture.get()) is not None:
        captured.text = _tail(outcome.output, settings.JUNCTION_CODE_MAX_LOG_BYTES)
    return _interpret(outcome, limits, wall)


def _has_nul(value: Any) -> bool:
    """Whether a JSON value holds U+0000 in a string or key (PostgreSQL's jsonb cannot store it)."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, list):
        return any(_has_nul(item) for item in value)
    if isinstance(value, dict):
        return any("\x00" in key or _has_nul(item) for key, item in value.items())
    return False


def _interpret(outcome: Outcome, limits: Limits, wall: float) -> Any:
    output = _tail(outcome.output)
    with_output = f"\n--- output ---\n{output}" if output else ""
    if outcome.output_exceeded:
        raise TaskFailed(f"the code's output exceeded the limit of {limits.output_bytes} bytes; it was stopped")
    if outcome.timed_out:
        raise TaskFailed(f"the code did not finish within the wall-clock limit of {wall:g} s; it was stopped"
                         + with_output)
    if not outcome.ready:
        raise SandboxUnavailable(f"code tasks are refused: the sandbox could not be set up (exit status "
                                 f"{outcome.returncode}): {output or 'no message'}")
    code = outcome.returncode
    if outcome.result:
        try:
            message = loads_bounded(outcome.result, max_depth=settings.JUNCTION_MAX_JSON_DEPTH + 1)
        except JsonTooDeep:
            raise TaskFailed(f"main() returned a value nested deeper than {settings.JUNCTION_MAX_JSON_DEPTH} "
                             f"levels of lists and dicts" + with_output) from None
        except ValueError:
            message = None
        if isinstance(message, dict) and "ok" in message and code == 0:
            if _has_nul(message["ok"]):
                raise TaskFailed("main() returned text containing the NUL character (U+0000), "
                                 "which cannot be stored; remove it from the result")
            return message["ok"]
        if isinstance(message, dict) and isinstance(message.get("error"), str):
            raise TaskFailed(message["error"] + with_output)
    if outcome.oom_killed:
        raise TaskFailed(f"the code was stopped: its processes together went past the memory limit of "
                         f"{limits.memory_mib} MiB (plus {limits.file_mib} MiB for /tmp)" + with_output)
    if code is not None and code > 128:
        signum = code - 128
        name = signal.Signals(signum).name if signum in signal.Signals._value2member_map_ else str(signum)
        reasons: dict[int, str] = {
            signal.SIGXCPU: f"the CPU time limit of {limits.cpu_seconds} s was exceeded",
            signal.SIGKILL: f"killed (CPU time limit of {limits.cpu_seconds} s or memory limit of "
                            f"{limits.memory_mib} MiB)",
            signal.SIGXFSZ: f"the file size limit of {limits.file_mib} MiB was exceeded",
        }
        reason = reasons.get(signum, "killed")
        raise TaskFailed(f"the code was stopped by {name}: {reason}" + with_output)
    raise TaskFailed(f"the code ended (exit status {code}) without returning a result from main()" + with_output)
