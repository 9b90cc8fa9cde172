"""Build the seccomp program that bwrap loads into the code sandbox (`bwrap --seccomp FD`).

The filter allows every system call except the ones below, which answer EPERM (so that user
code gets an ordinary `PermissionError`, not a dead process). They are the kernel's riskiest
entry points, and none of them is needed to run Python: see docs/sandbox.md for the list and
why each is there. `clone3` answers ENOSYS instead, because its flags live in a structure that
seccomp cannot read; glibc then falls back to `clone`, whose flags are checked, so threads
still work.

To deny another call, add its name to `DENIED` with the reason in docs/sandbox.md. The program
is built with libseccomp (through `pyseccomp`, a ctypes binding of the system's libseccomp.so)
once per process, for the machine's native architecture; calls made through another ABI
(i386 `int 0x80`, x32) are refused by libseccomp's architecture check.
"""
from __future__ import annotations

import errno
import functools
import io
import os
import tempfile

# Namespace flags of clone(2) and unshare(2): a new user namespace gives uid 0 with every
# capability inside it, the door to mount, netfilter, bpf … code.
CLONE_NEWTIME = 0x00000080
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
NAMESPACE_FLAGS = (CLONE_NEWTIME, CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWUSER,
                   CLONE_NEWPID, CLONE_NEWNET)

# ioctl requests that push input into a terminal (TIOCSTI) or reach the console's internals.
TIOCSTI = 0x5412
TIOCLINUX = 0x541C

DENIED: tuple[str, ...] = (
    # namespaces (unshare and clone only with CLONE_NEW* flags, below)
    "setns",
    # other processes' memory
    "ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd", "kcmp",
    # mounts and the filesystem tree
    "mount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree", "fsopen", "fsconfig", "fsmount",
    "fspick", "mount_setattr", "name_to_handle_at", "open_by_handle_at", "quotactl", "quotactl_fd",
    # large, often exploited kernel subsystems
    "bpf", "perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter", "io_uring_register",
    "fanotify_init",
    # kernel keyrings
    "keyctl", "add_key", "request_key",
    # the kernel itself, its modules, the machine
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module", "reboot", "swapon",
    "swapoff", "acct", "iopl", "ioperm", "syslog", "uselib", "lookup_dcookie", "vhangup",
    "settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "sethostname", "setdomainname",
    # NUMA placement (memory policy of the machine)
    "mbind", "migrate_pages", "move_pages", "set_mempolicy",
    # personality flags that weaken ASLR or change the ABI
    "personality",
)


class SeccompUnavailable(RuntimeError):
    """libseccomp or its binding is missing, so no filter can be built."""


def _rules(scmp, sandbox_filter) -> None:
    eperm = scmp.ERRNO(errno.EPERM)
    for name in DENIED:
        number = scmp.resolve_syscall(scmp.Arch.NATIVE, name)
        if number < 0:  # not a call of this architecture (or this libseccomp is older)
            continue
        sandbox_filter.add_rule(eperm, number)
    for name in ("clone", "unshare"):
        # clone's and unshare's flags are both the first argument on x86-64 and arm64. clone
        # cannot ask for a time namespace: its 0x80 is part of the exit signal (CSIGNAL).
        for flag in NAMESPACE_FLAGS:
            if not (name == "clone" and flag == CLONE_NEWTIME):
                sandbox_filter.add_rule(eperm, name, scmp.Arg(0, scmp.MASKED_EQ, flag, flag))
    sandbox_filter.add_rule(scmp.ERRNO(errno.ENOSYS), "clone3")
    for request in (TIOCSTI, TIOCLINUX):
        sandbox_filter.add_rule(eperm, "ioctl", scmp.Arg(1, scmp.MASKED_EQ, 0xFFFFFFFF, request))


@functools.cache
def seccomp_program() -> bytes:
    """Return the filter as a BPF program (what `bwrap --seccomp` reads).

    Raises SeccompUnavailable when libseccomp cannot be loaded: the sandbox then refuses
    code, as it does for every other missing piece.
    """
    try:
        import pyseccomp as scmp
    except (ImportError, OSError, AttributeError) as exc:  # the binding, or libseccomp.so itself
        raise SeccompUnavailable(f"libseccomp cannot be loaded ({exc}); install libseccomp2 and pyseccomp") from None
    sandbox_filter = scmp.SyscallFilter(scmp.ALLOW)
    # bwrap sets no-new-privs itself; libseccomp need not.
    sandbox_filter.set_attr(scmp.Attr.CTL_NNP, 0)
    _rules(scmp, sandbox_filter)
    with tempfile.TemporaryFile() as program:
        sandbox_filter.export_bpf(program)
        program.seek(0, io.SEEK_SET)
        data = program.read()
    if not data or len(data) % 8:
        raise SeccompUnavailable("libseccomp exported an empty or malformed program")
    return data


def program_fd() -> int:
    """Return a readable fd holding the program, for `bwrap --seccomp FD` (the caller closes it)."""
    program = seccomp_program()
    read_end, write_end = os.pipe()
    try:
        # A few hundred bytes: far below a pipe's buffer, so this never blocks.
        os.write(write_end, program)
    finally:
        os.close(write_end)
    return read_end
