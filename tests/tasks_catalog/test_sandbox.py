"""The code sandbox (tasks_catalog/sandbox.py): escapes are contained, and it fails closed.

Every test runs real code under real bubblewrap, with small limits so that each finishes in
seconds. A test that tries to escape asserts both that the attempt failed and what the code
saw instead. They are not skipped without bubblewrap: there they fail with the sandbox's own
"code tasks are refused" message (scripts/run-tests installs bubblewrap).
"""
from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.test import override_settings

from tasks_catalog.base import TaskFailed
from tasks_catalog.sandbox import SandboxUnavailable, run_in_sandbox


SMALL_LIMITS = dict(
    JUNCTION_CODE_SANDBOX="bwrap",
    JUNCTION_CODE_CPU_SECONDS=1,
    JUNCTION_CODE_MEMORY_MIB=128,
    JUNCTION_CODE_WALL_SECONDS=4,
    JUNCTION_CODE_MAX_OUTPUT_BYTES=64 * 1024,
    JUNCTION_CODE_MAX_PROCESSES=8,
    JUNCTION_CODE_MAX_OPEN_FILES=32,
    JUNCTION_CODE_MAX_FILE_MIB=1,
    # A uid range of this test process alone, so that checking for left-over sandbox processes
    # is not confused by other test runs on the same machine.
    JUNCTION_CODE_SANDBOX_UID=100_000 + (os.getpid() % 100_000) * 8,
    JUNCTION_CODE_SANDBOX_UID_COUNT=8,
)
SECRET = "junction-test-secret-7f3a9c1e"
PROJECT_SETTINGS = Path(settings.BASE_DIR) / "config" / "settings.py"


@pytest.fixture(autouse=True)
def small_limits():
    with override_settings(**SMALL_LIMITS):
        yield


def run(code: str, inputs=None, timeout: float | None = None):
    return run_in_sandbox(code=code, inputs=inputs if inputs is not None else {}, timeout=timeout)


def failure(code: str, inputs=None, timeout: float | None = None) -> str:
    with pytest.raises(TaskFailed) as raised:
        run(code, inputs, timeout)
    assert not isinstance(raised.value, SandboxUnavailable), str(raised.value)
    return str(raised.value)


def sandbox_processes() -> list[int]:
    """Pids of processes running as one of the sandbox uids right now."""
    first = settings.JUNCTION_CODE_SANDBOX_UID
    uids = range(first, first + settings.JUNCTION_CODE_SANDBOX_UID_COUNT)
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid in uids:
                    found.append(int(entry.name))
            except FileNotFoundError:
                pass
    return found


SUM = "def main(inputs):\n    return {'sum': sum(inputs['numbers'])}\n"


# --- normal runs ---------------------------------------------------------------------------------


def test_main_gets_the_inputs_and_its_result_is_the_output():
    assert run(SUM, {"numbers": [1, 2, 3.5]}) == {"sum": 6.5}


def test_nested_json_comes_back_intact():
    nested = {"a": [1, {"b": None, "c": [True, False]}], "d": "é ✓", "e": {"f": {"g": 1.25}}}
    assert run("def main(inputs):\n    return {'echo': inputs, 'list': [inputs, 2]}\n", nested) == {
        "echo": nested, "list": [nested, 2],
    }


def test_the_standard_library_is_available():
    code = "import hashlib, re, datetime\ndef main(inputs):\n    return hashlib.sha256(b'x').hexdigest()[:8]\n"
    assert run(code) == "2d711642"


def test_code_runs_as_an_unprivileged_user_without_capabilities():
    code = (
        "import os\n"
        "def main(inputs):\n"
        "    status = dict(l.split(':', 1) for l in open('/proc/self/status'))\n"
        "    return {'ids': os.getresuid() + os.getresgid(), 'groups': os.getgroups(),\n"
        "            'caps': [int(status[k], 16) for k in ('CapInh', 'CapPrm', 'CapEff', 'CapBnd', 'CapAmb')],\n"
        "            'nnp': status['NoNewPrivs'].strip(), 'pid': os.getpid()}\n"
    )
    seen = run(code)
    assert 0 not in seen["ids"] and len(set(seen["ids"])) == 1
    assert seen["ids"][0] in range(settings.JUNCTION_CODE_SANDBOX_UID,
                                   settings.JUNCTION_CODE_SANDBOX_UID + settings.JUNCTION_CODE_SANDBOX_UID_COUNT)
    assert seen["groups"] == []
    assert seen["caps"] == [0, 0, 0, 0, 0]
    assert seen["nnp"] == "1"
    assert seen["pid"] < 10  # its own pid namespace


# --- failures of the code ------------------------------------------------------------------------


def test_an_exception_becomes_the_error_with_its_traceback():
    code = "def helper(x):\n    return x / 0\n\ndef main(inputs):\n    return helper(inputs['n'])\n"
    error = failure(code, {"n": 1})
    assert error.startswith("Traceback (most recent call last):")
    assert 'File "<code>", line 5, in main' in error
    assert 'File "<code>", line 2, in helper' in error
    assert "return x / 0" in error  # the user's own source line
    assert error.rstrip().endswith("ZeroDivisionError: division by zero")
    assert "sandbox" not in error  # the runner's own frames are not shown


def test_printed_output_is_part_of_the_error():
    error = failure("import sys\ndef main(inputs):\n    print('step 1 done')\n    print('oops', file=sys.stderr)\n    raise ValueError('bad')\n")
    assert "ValueError: bad" in error
    assert "step 1 done" in error and "oops" in error


def test_a_result_that_is_not_json_fails():
    assert "not JSON-serialisable" in failure("def main(inputs):\n    return {1, 2}\n")
    assert "not JSON-serialisable" in failure("def main(inputs):\n    return float('nan')\n")


def test_a_result_with_a_nul_character_fails_clearly():
    # Valid JSON, but PostgreSQL's jsonb cannot store U+0000: refuse it here, with a reason.
    assert "NUL character" in failure("def main(inputs):\n    return {'a': ['x\\0y']}\n")
    assert "NUL character" in failure("def main(inputs):\n    return {'k\\0': 1}\n")


def test_code_without_main_fails():
    assert "does not define a function main(inputs)" in failure("x = 1\n")


def test_a_syntax_error_fails_with_its_position():
    error = failure("def main(inputs)\n    return 1\n")
    assert "SyntaxError" in error and 'File "<code>", line 1' in error


def test_exit_instead_of_return_fails():
    assert "called exit(3)" in failure("import sys\ndef main(inputs):\n    sys.exit(3)\n")


def test_writing_a_fake_result_to_stdout_is_not_the_result():
    code = "def main(inputs):\n    print('{\"ok\": \"forged\"}')\n    raise RuntimeError('real')\n"
    assert "RuntimeError: real" in failure(code)


# --- resource limits ------------------------------------------------------------------------------


@override_settings(JUNCTION_CODE_WALL_SECONDS=30)
def test_an_infinite_loop_is_stopped_by_the_cpu_limit():
    # A generous wall clock, so that only the CPU limit can stop it even on a busy machine.
    started = time.monotonic()
    error = failure("def main(inputs):\n    while True:\n        pass\n")
    assert "CPU time limit of 1 s" in error
    assert time.monotonic() - started < 20


def test_a_sleeping_loop_is_stopped_by_the_wall_clock_limit():
    started = time.monotonic()
    error = failure("import time\ndef main(inputs):\n    while True:\n        time.sleep(0.1)\n")
    assert "wall-clock limit of 4 s" in error
    assert 3.9 < time.monotonic() - started < 10
    assert sandbox_processes() == []


def test_the_tasks_own_timeout_shortens_the_wall_clock_limit():
    started = time.monotonic()
    error = failure("import time\ndef main(inputs):\n    time.sleep(30)\n", timeout=1.5)
    assert "wall-clock limit of 1.5 s" in error
    assert time.monotonic() - started < 4


def test_a_memory_bomb_hits_the_memory_limit():
    code = "def main(inputs):\n    blocks = []\n    while True:\n        blocks.append(bytearray(16 * 1024 * 1024))\n"
    assert "memory limit" in failure(code)


def test_a_memory_bomb_that_swallows_memory_error_is_still_stopped():
    code = (
        "def main(inputs):\n"
        "    blocks = []\n"
        "    while True:\n"
        "        try:\n"
        "            blocks.append(bytearray(1024 * 1024))\n"
        "        except MemoryError:\n"
        "            pass\n"
    )
    error = failure(code)
    assert "CPU time limit" in error or "wall-clock limit" in error


def test_processes_are_limited():
    code = (
        "import os, time\n"
        "def main(inputs):\n"
        "    children = 0\n"
        "    try:\n"
        "        while children < 100:\n"
        "            if os.fork() == 0:\n"
        "                time.sleep(30)\n"
        "                os._exit(0)\n"
        "            children += 1\n"
        "    except OSError as exc:\n"
        "        return {'children': children, 'error': exc.__class__.__name__}\n"
        "    return {'children': children}\n"
    )
    seen = run(code)
    assert seen["error"] == "BlockingIOError"
    assert seen["children"] < SMALL_LIMITS["JUNCTION_CODE_MAX_PROCESSES"]
    # The sleeping children die with the sandbox.
    assert sandbox_processes() == []


def test_a_fork_bomb_is_contained_and_the_next_task_runs_normally():
    bomb = (
        "import os\n"
        "def main(inputs):\n"
        "    while True:\n"
        "        try:\n"
        "            os.fork()\n"
        "        except OSError:\n"
        "            pass\n"
    )
    started = time.monotonic()
    error = failure(bomb)
    assert "CPU time limit" in error or "wall-clock limit" in error
    assert time.monotonic() - started < 10
    assert sandbox_processes() == []
    # This process is fine, and so is the next sandbox.
    assert subprocess.run(["true"], check=False).returncode == 0
    assert run(SUM, {"numbers": [2, 3]}) == {"sum": 5}


def test_huge_output_is_cut_off_while_it_is_read():
    started = time.monotonic()
    error = failure("import sys\ndef main(inputs):\n    while True:\n        sys.stdout.write('x' * 65536)\n")
    # Stopped by the cap, not by the 4 s wall clock.
    assert error == "the code's output exceeded the limit of 65536 bytes; it was stopped"
    assert time.monotonic() - started < 4
    assert sandbox_processes() == []


def test_a_huge_result_counts_against_the_output_limit():
    error = failure("def main(inputs):\n    return 'x' * (1024 * 1024)\n")
    assert "output exceeded the limit of 65536 bytes" in error


def test_file_size_is_limited():
    code = (
        "def main(inputs):\n"
        "    with open('/tmp/big', 'wb') as f:\n"
        "        f.write(b'x' * (2 * 1024 * 1024))\n"
    )
    error = failure(code)
    assert "OSError" in error or "File too large" in error or "No space left" in error


def test_open_files_are_limited():
    code = (
        "def main(inputs):\n"
        "    files = []\n"
        "    try:\n"
        "        while len(files) < 1000:\n"
        "            files.append(open('/dev/null'))\n"
        "    except OSError as exc:\n"
        "        return {'opened': len(files), 'errno': exc.errno}\n"
    )
    seen = run(code)
    assert seen["errno"] == 24  # EMFILE
    assert seen["opened"] < SMALL_LIMITS["JUNCTION_CODE_MAX_OPEN_FILES"]


# --- isolation ------------------------------------------------------------------------------------


def test_the_hosts_etc_passwd_is_not_there():
    code = (
        "import os\n"
        "def main(inputs):\n"
        "    try:\n"
        "        return open('/etc/passwd').read()\n"
        "    except OSError as exc:\n"
        "        return {'error': exc.__class__.__name__, 'etc': os.path.exists('/etc')}\n"
    )
    seen = run(code)
    assert seen == {"error": "FileNotFoundError", "etc": False}
    assert "root:x:0:0" not in json.dumps(seen)


def test_the_project_directory_is_not_mounted():
    code = (
        "import os\n"
        "def main(inputs):\n"
        "    found = []\n"
        "    for top in ('/', '/tmp', '/root'):\n"
        "        found += os.listdir(top)\n"
        "    try:\n"
        "        return {'settings': open(inputs['settings']).read()}\n"
        "    except OSError as exc:\n"
        "        return {'error': exc.__class__.__name__, 'project': os.path.exists(inputs['root']), 'found': found}\n"
    )
    seen = run(code, {"settings": str(PROJECT_SETTINGS), "root": str(settings.BASE_DIR)})
    assert seen["error"] == "FileNotFoundError"
    assert seen["project"] is False
    assert "SECRET_KEY" not in json.dumps(seen)
    assert set(seen["found"]) <= {"usr", "lib", "lib64", "root", "tmp", "proc", "dev", ".pyenv"}


def test_the_virtualenv_and_site_packages_are_not_importable():
    code = (
        "def main(inputs):\n"
        "    missing = []\n"
        "    for name in ('django', 'celery', 'config', 'tasks_catalog', 'pip'):\n"
        "        try:\n"
        "            __import__(name)\n"
        "        except ImportError:\n"
        "            missing.append(name)\n"
        "    return missing\n"
    )
    assert run(code) == ["django", "celery", "config", "tasks_catalog", "pip"]


def test_no_secret_of_the_worker_reaches_the_code(monkeypatch):
    monkeypatch.setenv("JUNCTION_SANDBOX_TEST_SECRET", SECRET)
    code = (
        "import os\n"
        "def main(inputs):\n"
        "    environs = {}\n"
        "    for pid in [p for p in os.listdir('/proc') if p.isdigit()] + ['self']:\n"
        "        try:\n"
        "            environs[pid] = open(f'/proc/{pid}/environ', 'rb').read().decode().replace('\\0', '\\n')\n"
        "        except OSError as exc:\n"
        "            environs[pid] = exc.__class__.__name__\n"
        "    return {'environ': dict(os.environ), 'proc': environs}\n"
    )
    seen = run(code)
    assert SECRET not in json.dumps(seen)
    assert set(seen["environ"]) <= {"LANG", "PYTHONDONTWRITEBYTECODE", "PYTHONNOUSERSITE", "HOME", "PWD"}
    assert seen["proc"]["1"] == "PermissionError"  # bwrap's own init, running as root


def test_no_file_in_the_sandbox_holds_a_secret_of_the_server():
    code = (
        "import os\n"
        "def main(inputs):\n"
        "    seen = []\n"
        "    for path, dirs, files in os.walk('/'):\n"
        "        # Skip the shared libraries, the standard library and the kernel's files.\n"
        "        dirs[:] = [d for d in dirs if os.path.join(path, d) not in inputs['skip']]\n"
        "        for name in files:\n"
        "            if os.path.isfile(os.path.join(path, name)):  # not devices such as /dev/tty\n"
        "                try:\n"
        "                    seen.append(open(os.path.join(path, name), 'rb').read(4096).decode('latin-1'))\n"
        "                except OSError:\n"
        "                    pass\n"
        "    return '\\n'.join(seen).replace('\\0', '')\n"
    )
    everything = run(code, {"skip": ["/usr", "/proc", f"{sys.base_prefix}/lib"]})
    assert settings.SECRET_KEY not in everything
    for key in settings.JUNCTION_ENCRYPTION_KEYS:
        assert key not in everything


def test_a_socket_to_the_hosts_loopback_gets_nowhere():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.5)
    port = server.getsockname()[1]
    code = (
        "import socket\n"
        "def main(inputs):\n"
        "    errors = []\n"
        "    for address in [('127.0.0.1', inputs['port']), ('10.0.0.1', 80), ('1.1.1.1', 53)]:\n"
        "        try:\n"
        "            socket.create_connection(address, timeout=1).close()\n"
        "            errors.append('connected')\n"
        "        except OSError as exc:\n"
        "            errors.append(exc.__class__.__name__)\n"
        "    return {'errors': errors, 'interfaces': [name for _, name in socket.if_nameindex()]}\n"
    )
    try:
        seen = run(code, {"port": port})
        with pytest.raises(TimeoutError):
            server.accept()
    finally:
        server.close()
    assert "connected" not in seen["errors"]
    assert seen["interfaces"] == ["lo"]


def test_only_tmp_is_writable():
    code = (
        "import os\n"
        "def main(inputs):\n"
        "    outcome = {}\n"
        "    for path in ['/x', '/usr/lib/x', '/root/x', '/proc/x', inputs['prefix'] + '/lib/x', '/tmp/ok']:\n"
        "        try:\n"
        "            with open(path, 'w') as f:\n"
        "                f.write('data')\n"
        "            outcome[path] = open(path).read()\n"
        "        except OSError as exc:\n"
        "            outcome[path] = exc.__class__.__name__\n"
        "    return outcome\n"
    )
    seen = run(code, {"prefix": sys.base_prefix})
    assert seen.pop("/tmp/ok") == "data"
    assert all(value in {"PermissionError", "OSError", "FileNotFoundError"} for value in seen.values()), seen
    assert not Path("/x").exists() and not Path(sys.base_prefix, "lib", "x").exists()


def test_tmp_is_private_to_each_run():
    run("def main(inputs):\n    open('/tmp/left-behind', 'w').write('x')\n    return 1\n")
    assert run("import os\ndef main(inputs):\n    return os.listdir('/tmp')\n") == []


# --- failing closed -------------------------------------------------------------------------------

# Unsandboxed, this would create the file named in the inputs.
WITNESS = "def main(inputs):\n    open(inputs['path'], 'w').write('ran')\n    return 'ran'\n"


def assert_refused(tmp_path: Path, *needles: str) -> None:
    witness = tmp_path / "witness"
    with pytest.raises(SandboxUnavailable) as raised:
        run(WITNESS, {"path": str(witness)})
    message = str(raised.value)
    assert message.startswith("code tasks are refused")
    for needle in needles:
        assert needle in message
    assert not witness.exists()


def test_code_is_refused_when_the_sandbox_is_off(tmp_path):
    with override_settings(JUNCTION_CODE_SANDBOX="off"):
        assert_refused(tmp_path, "JUNCTION_CODE_SANDBOX=off")


def test_code_is_refused_when_bwrap_is_missing(tmp_path):
    with override_settings(JUNCTION_CODE_SANDBOX_BWRAP="/nonexistent/bwrap"):
        assert_refused(tmp_path, "not installed", "/nonexistent/bwrap")


def test_code_is_refused_when_bwrap_fails_to_start(tmp_path):
    fake = tmp_path / "bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: Creating new namespace failed: Operation not permitted' >&2\nexit 1\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    with override_settings(JUNCTION_CODE_SANDBOX_BWRAP=str(fake)):
        assert_refused(tmp_path, "could not be set up", "Operation not permitted")


def test_code_is_refused_when_the_sandbox_would_run_it_as_root(tmp_path):
    # A "bwrap" that sets nothing up and runs the interpreter directly as root: the runner
    # notices its privileges and refuses before reading the code.
    fake = tmp_path / "bwrap"
    fake.write_text('#!/bin/sh\nwhile [ "$1" != "--" ]; do shift; done\nshift\nexec "$@"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    with override_settings(JUNCTION_CODE_SANDBOX_BWRAP=str(fake)):
        assert_refused(tmp_path, "could not be set up", "refusing to run with privileges")


# --- what the error shows --------------------------------------------------------------------------


def test_a_traceback_through_the_standard_library_shows_no_host_path():
    error = failure("import json\n\ndef main(inputs):\n    return json.loads('{')\n")
    assert 'File "<code>", line 4, in main' in error
    assert "return json.loads('{')" in error
    assert 'File "<stdlib>/json/decoder.py"' in error
    assert sys.base_prefix not in error and "/lib/python" not in error
    assert 'File "<string>"' not in error  # the runner's own frames


def test_a_chained_exception_shows_both_tracebacks_with_user_lines():
    code = (
        "def main(inputs):\n"
        "    try:\n"
        "        {}['key']\n"
        "    except KeyError as exc:\n"
        "        raise ValueError('wrapped') from exc\n"
    )
    error = failure(code)
    assert 'File "<code>", line 3, in main' in error and 'File "<code>", line 5, in main' in error
    assert "The above exception was the direct cause" in error
    assert 'File "<string>"' not in error
