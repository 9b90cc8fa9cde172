"""The sandbox's seccomp filter (tasks_catalog/seccomp_filter.py): each class of kernel call it
closes is refused with EPERM from inside a real code run, and ordinary Python still works.

The system call numbers are resolved here, with the same libseccomp, for this machine's
architecture, and handed to the code as inputs; the code calls them raw through libc.
"""
from __future__ import annotations

import errno

import pytest
from django.test import override_settings

import pyseccomp

from tasks_catalog import seccomp_filter
from tasks_catalog.sandbox import SandboxUnavailable, run_in_sandbox
from tests.tasks_catalog.test_sandbox import SMALL_LIMITS, WITNESS

# Tries one raw system call per entry; a call that succeeds where it should not is reported
# as "ok". A clone that created a child: the child leaves at once.
PROBE = r'''
import ctypes, errno, os
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long

def main(inputs):
    seen = {}
    for label, (number, args) in inputs["calls"].items():
        ctypes.set_errno(0)
        result = libc.syscall(ctypes.c_long(number), *[ctypes.c_long(a) for a in args])
        if result >= 0 and label.startswith("clone"):
            if result > 0:
                os.waitpid(result, 0)
            else:
                os._exit(0)
        seen[label] = "ok" if result >= 0 else errno.errorcode[ctypes.get_errno()]
    return seen
'''

CLONE_NEWUSER, CLONE_NEWNS, CLONE_NEWNET, CLONE_NEWPID = 0x10000000, 0x20000, 0x40000000, 0x20000000
SIGCHLD = 17
PTRACE_TRACEME = 0
KEY_SPEC_SESSION_KEYRING = -3


def nr(name: str) -> int:
    number = pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, name)
    assert number >= 0, name
    return number


# label -> (system call, arguments). Each one, unfiltered, would do something as this uid
# (or fail with another errno than EPERM), so EPERM shows that the filter answered.
REFUSED = {
    "unshare(CLONE_NEWUSER)": ("unshare", [CLONE_NEWUSER]),
    "unshare(CLONE_NEWUSER|CLONE_NEWNS)": ("unshare", [CLONE_NEWUSER | CLONE_NEWNS]),
    "unshare(CLONE_NEWNET)": ("unshare", [CLONE_NEWNET]),
    "clone(CLONE_NEWUSER)": ("clone", [CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0]),
    "clone(CLONE_NEWPID)": ("clone", [CLONE_NEWPID | SIGCHLD, 0, 0, 0, 0]),
    "setns": ("setns", [-1, 0]),  # EBADF unfiltered
    "ptrace(PTRACE_TRACEME)": ("ptrace", [PTRACE_TRACEME, 0, 0, 0]),  # succeeds unfiltered
    "process_vm_readv": ("process_vm_readv", [1, 0, 0, 0, 0, 0]),
    "mount": ("mount", [0, 0, 0, 0, 0]),
    "umount2": ("umount2", [0, 0]),
    "pivot_root": ("pivot_root", [0, 0]),
    "fsopen": ("fsopen", [0, 0]),
    "open_tree": ("open_tree", [-1, 0, 0]),
    "move_mount": ("move_mount", [-1, 0, -1, 0, 0]),
    "bpf": ("bpf", [0, 0, 0]),
    "perf_event_open": ("perf_event_open", [0, 0, -1, -1, 0]),
    "userfaultfd": ("userfaultfd", [0]),
    "io_uring_setup": ("io_uring_setup", [1, 0]),  # EFAULT unfiltered
    "keyctl": ("keyctl", [0, KEY_SPEC_SESSION_KEYRING, 0]),  # KEYCTL_GET_KEYRING_ID works unfiltered
    "add_key": ("add_key", [0, 0, 0, 0, 0]),
    "request_key": ("request_key", [0, 0, 0, 0]),
    "kexec_load": ("kexec_load", [0, 0, 0, 0]),
    "init_module": ("init_module", [0, 0, 0]),
    "finit_module": ("finit_module", [-1, 0, 0]),
    "delete_module": ("delete_module", [0, 0]),
    "reboot": ("reboot", [0, 0, 0, 0]),
    "swapon": ("swapon", [0, 0]),
    "swapoff": ("swapoff", [0]),
    "acct": ("acct", [0]),
    "iopl": ("iopl", [3]),
    "ioperm": ("ioperm", [0, 1, 1]),
    "open_by_handle_at": ("open_by_handle_at", [-1, 0, 0]),
    "personality": ("personality", [0x0040000]),  # ADDR_NO_RANDOMIZE
}


@pytest.fixture(autouse=True)
def small_limits():
    with override_settings(**SMALL_LIMITS):
        yield


def probe(calls: dict[str, tuple[str, list[int]]]) -> dict[str, str]:
    present = {label: (nr(name), args) for label, (name, args) in calls.items()
               if pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, name) >= 0}
    return run_in_sandbox(code=PROBE, inputs={"calls": present}, timeout=None)


def test_every_denied_class_answers_eperm_inside_the_sandbox():
    seen = probe(REFUSED)
    assert seen, "no call could be resolved on this architecture"
    wrong = {label: answer for label, answer in seen.items() if answer != "EPERM"}
    assert wrong == {}


def test_clone3_answers_enosys_so_that_libc_falls_back_to_clone():
    assert probe({"clone3": ("clone3", [0, 0])}) == {"clone3": "ENOSYS"}


def test_the_same_calls_without_namespace_flags_still_work():
    seen = probe({
        "unshare(CLONE_FILES)": ("unshare", [0x400]),
        "clone(SIGCHLD)": ("clone", [SIGCHLD, 0, 0, 0, 0]),  # a plain fork
        "getpid": ("getpid", []),
    })
    assert seen == {"unshare(CLONE_FILES)": "ok", "clone(SIGCHLD)": "ok", "getpid": "ok"}


def test_user_code_gets_a_python_exception_it_can_catch():
    code = (
        "import ctypes, os\n"
        "def main(inputs):\n"
        "    libc = ctypes.CDLL(None, use_errno=True)\n"
        "    if libc.unshare(inputs['flag']) != 0:\n"
        "        error = OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))\n"
        "        return [type(error).__name__, str(error)]\n"
        "    return 'unshared'\n"
    )
    assert run_in_sandbox(code=code, inputs={"flag": CLONE_NEWUSER}) == [
        "PermissionError", f"[Errno {errno.EPERM}] Operation not permitted"]


def test_the_filter_is_loaded_in_the_code_process():
    code = (
        "def main(inputs):\n"
        "    status = dict(l.split(':', 1) for l in open('/proc/self/status'))\n"
        "    return [status['Seccomp'].strip(), status['NoNewPrivs'].strip()]\n"
    )
    assert run_in_sandbox(code=code, inputs={}) == ["2", "1"]


def test_ordinary_python_still_works():
    code = (
        "import asyncio, concurrent.futures, hashlib, json, math, multiprocessing, os, re, sqlite3, subprocess,\\\n"
        "       tempfile, threading, time, zlib, decimal, datetime, random, statistics\n"
        "def square(x):\n"
        "    return x * x\n"
        "async def later(x):\n"
        "    await asyncio.sleep(0.01)\n"
        "    return x + 1\n"
        "def main(inputs):\n"
        "    out = {'math': math.sqrt(16), 'json': json.loads('[1]'), 're': re.findall('a', 'banana'),\n"
        "           'sha': hashlib.sha1(b'').hexdigest()[:6], 'zlib': zlib.decompress(zlib.compress(b'xy')).decode()}\n"
        "    with concurrent.futures.ThreadPoolExecutor(4) as pool:\n"
        "        out['threads'] = list(pool.map(square, range(5)))\n"
        "    out['async'] = asyncio.run(later(1))\n"
        "    pid = os.fork()\n"
        "    if pid == 0:\n"
        "        os._exit(3)\n"
        "    out['fork'] = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])\n"
        "    with tempfile.NamedTemporaryFile('w+') as f:\n"
        "        f.write('hello'); f.flush(); f.seek(0); out['tmp'] = f.read()\n"
        "    db = sqlite3.connect(':memory:')\n"
        "    out['sqlite'] = db.execute('select 1 + 1').fetchone()[0]\n"
        "    return out\n"
    )
    assert run_in_sandbox(code=code, inputs={}) == {
        "math": 4.0, "json": [1], "re": ["a", "a", "a"], "sha": "da39a3", "zlib": "xy",
        "threads": [0, 1, 4, 9, 16], "async": 2, "fork": 3, "tmp": "hello", "sqlite": 2,
    }


def test_the_program_is_a_bpf_program():
    program = seccomp_filter.seccomp_program()
    assert program and len(program) % 8 == 0  # struct sock_filter is 8 bytes


def test_code_is_refused_when_the_filter_cannot_be_built(tmp_path, monkeypatch):
    def no_libseccomp():
        raise seccomp_filter.SeccompUnavailable("libseccomp cannot be loaded (test)")

    monkeypatch.setattr("tasks_catalog.sandbox.program_fd", no_libseccomp)
    witness = tmp_path / "witness"
    with pytest.raises(SandboxUnavailable, match="code tasks are refused: the seccomp filter cannot be built"):
        run_in_sandbox(code=WITNESS, inputs={"path": str(witness)})
    assert not witness.exists()
