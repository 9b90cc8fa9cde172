"""A small network of Linux network namespaces for tests: "hosts" on one switch.

`Lab` builds, with iproute2 (`ip netns`, `ip link`, `ip addr`), a switch — a bridge in a
namespace of its own — and hosts, each a namespace joined to the switch by a veth pair, with
an address the lab assigns (`10.231.0.<n>/24`). Nothing is added to the machine's own network
namespace: the switch and both ends of every veth live in the lab's namespaces, so the lab's
addresses are reachable only from inside them and cannot clash with the machine's.

Processes are started *inside* a host (`Lab.spawn`): the child enters the host's network
namespace before it executes, optionally gets a UTS namespace with the host's name as its
hostname (so `celery@%h` and `socket.gethostname()` say `host-b`), and optionally drops to
another user (`postgres`). Each is a process group of its own, is signalled when the test
process dies (PR_SET_PDEATHSIG, the signal each process stops best with) and is stopped by
`Lab.close()`, which then deletes the namespaces and the lab's work directory — also when the
test failed. What a test process killed outright left behind (no `close()`: namespaces, a
process stuck in one, the work directory) is removed by the next `Lab` (`sweep_stale`).

`Lab.thread(host)` is a thread that lives in a host's network namespace: what it connects to
or listens on is inside the lab (the test's HTTP client, its database checks, a fake service).

Needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN) and a kernel with network namespaces: `unavailable()`
says why not, for a skip.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

CLONE_NEWNET = 0x40000000
CLONE_NEWUTS = 0x04000000
PR_SET_PDEATHSIG = 1
NETNS_DIR = Path("/run/netns")
# Namespaces are named jnlab<pid>-<host>, the work directory /tmp/jnlab<pid>-…: <pid> is the
# test process that made them.
PREFIX = "jnlab"
_NAME = re.compile(rf"^{PREFIX}(\d+)-")
T = TypeVar("T")

_libc = ctypes.CDLL("libc.so.6", use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def enter_netns(path: str | Path) -> None:
    """Move the calling thread into the network namespace at `path` (setns(2))."""
    fd = os.open(path, os.O_RDONLY)
    try:
        _check(_libc.setns(fd, CLONE_NEWNET), f"setns {path}")
    finally:
        os.close(fd)


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done


def unavailable() -> str | None:
    """Why a lab cannot be built here (for a skip), or None."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, veth pairs)"
    if shutil.which("ip") is None:
        return "iproute2's `ip` is not installed"
    probe = f"{PREFIX}{os.getpid()}-probe"
    try:
        made = _ip("netns", "add", probe, check=False)
        if made.returncode != 0:
            return f"`ip netns add` does not work here: {made.stderr.strip()}"
        veth = _ip("-n", probe, "link", "add", "p0", "type", "veth", "peer", "name", "p1", check=False)
        if veth.returncode != 0:
            return f"veth pairs cannot be made here: {veth.stderr.strip()}"
    finally:
        _ip("netns", "del", probe, check=False)
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stale(name: str) -> bool:
    found = _NAME.match(name)
    return found is not None and int(found.group(1)) != os.getpid() and not _alive(int(found.group(1)))


def sweep_stale() -> list[str]:
    """Remove what lab test processes that no longer run left behind; return the namespaces.

    A process still inside one of their namespaces was started by such a test (a worker stuck
    on a host that was unplugged): it is killed first.
    """
    stale = []
    for line in _ip("netns", "list", check=False).stdout.splitlines():
        name = line.split(" ", 1)[0]
        if _stale(name):
            for pid in _ip("netns", "pids", name, check=False).stdout.split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
            _ip("netns", "del", name, check=False)
            stale.append(name)
    for entry in Path(tempfile.gettempdir()).glob(f"{PREFIX}*-*"):
        if entry.is_dir() and _stale(entry.name):
            shutil.rmtree(entry, ignore_errors=True)
    return stale


def _preexec(
    netns: Path, hostname: str | None, user: tuple[int, int] | None, death_signal: int,
) -> Callable[[], None]:
    """What the child does between fork and exec: enter the host, take its name, drop to `user`."""

    def enter() -> None:
        enter_netns(netns)
        if hostname:
            _check(_libc.unshare(CLONE_NEWUTS), "unshare(CLONE_NEWUTS)")
            name = hostname.encode()
            _check(_libc.sethostname(name, len(name)), "sethostname")
        if user:
            uid, gid = user
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
        # Last: a change of credentials clears it. The kernel sends it when the test process
        # (the thread that forked, the main thread) dies, however it dies.
        _check(_libc.prctl(PR_SET_PDEATHSIG, death_signal), "prctl(PR_SET_PDEATHSIG)")

    return enter


@dataclass
class Host:
    """A namespace on the lab's switch: `name` is also its hostname, `address` its IPv4 address."""

    name: str
    address: str
    netns: str  # the namespace's name (`ip netns list`)
    port: str  # the switch's end of its veth pair

    @property
    def path(self) -> Path:
        return NETNS_DIR / self.netns


@dataclass
class Lab:
    """Build hosts on a switch; run processes in them; tear everything down in `close()`."""

    subnet: str = "10.231.0"  # /24; hosts get .<n>
    log_dir: Path = Path("/tmp/junction-lab")
    hosts: dict[str, Host] = field(default_factory=dict)
    processes: list[tuple[str, subprocess.Popen]] = field(default_factory=list)
    workdir: Path = Path()  # for the processes' files (a database cluster); deleted by close()
    _threads: list[ThreadPoolExecutor] = field(default_factory=list)
    _switch: str = ""

    def __post_init__(self) -> None:
        sweep_stale()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.workdir = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-"))
        self.workdir.chmod(0o755)  # a process run as another user (postgres) reaches its directory
        self._switch = f"{PREFIX}{os.getpid()}-switch"
        try:
            _ip("netns", "add", self._switch)
            _ip("-n", self._switch, "link", "add", "br0", "type", "bridge")
            _ip("-n", self._switch, "link", "set", "br0", "up")
        except BaseException:
            self.close()
            raise

    def add_host(self, name: str, number: int) -> Host:
        """Add host `name` at <subnet>.<number>, plugged into the switch (and its loopback up)."""
        netns = f"{PREFIX}{os.getpid()}-{name}"
        port = f"p{number}"
        host = Host(name=name, address=f"{self.subnet}.{number}", netns=netns, port=port)
        _ip("netns", "add", netns)
        self.hosts[name] = host
        # Both ends are made in the switch's namespace; one moves into the host as its eth0.
        _ip("-n", self._switch, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", netns)
        _ip("-n", self._switch, "link", "set", port, "master", "br0", "up")
        _ip("-n", netns, "addr", "add", f"{host.address}/24", "dev", "eth0")
        _ip("-n", netns, "link", "set", "eth0", "up")
        _ip("-n", netns, "link", "set", "lo", "up")
        return host

    def unplug(self, host: Host) -> None:
        """Pull the host's cable out of the switch: its veth's switch end goes down.

        The host notices nothing (its own eth0 stays up, no error on its sockets): what it
        sends is lost, as when a machine drops off the network.
        """
        _ip("-n", self._switch, "link", "set", host.port, "down")

    def plug(self, host: Host) -> None:
        _ip("-n", self._switch, "link", "set", host.port, "up")

    def spawn(
        self, host: Host, argv: list[str], *, env: dict[str, str], label: str, cwd: Path | None = None,
        hostname: bool = False, user: str | None = None, death_signal: int = signal.SIGTERM,
    ) -> subprocess.Popen:
        """Start `argv` inside `host` (its own process group), output to `<log_dir>/<label>.log`.

        `hostname`: a UTS namespace of its own named after the host; `user`: run as that user;
        `death_signal`: what it gets if the test process dies (SIGKILL for a process whose clean
        stop could wait forever, such as a worker on an unplugged host).
        """
        ids = None
        if user:
            import pwd

            entry = pwd.getpwnam(user)
            ids = (entry.pw_uid, entry.pw_gid)
        with open(self.log_dir / f"{label}.log", "ab") as log:
            # preexec_fn with threads running: it only makes system calls (setns, unshare,
            # sethostname, setuid, prctl) — no lock another thread could hold at fork.
            process = subprocess.Popen(
                argv, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=_preexec(host.path, host.name if hostname else None, ids, death_signal),  # noqa: PLW1509
            )
        self.processes.append((label, process))
        return process

    def run(self, host: Host, argv: list[str], *, env: dict[str, str], label: str, cwd: Path | None = None,
            user: str | None = None, timeout: float = 120) -> None:
        """Run `argv` inside `host` to its end; raise with its log's tail if it fails."""
        process = self.spawn(host, argv, env=env, label=label, cwd=cwd, user=user)
        try:
            code = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            stop(process)
            raise AssertionError(f"{label} did not finish in {timeout:g} s: {self.tail(label)}") from None
        if code != 0:
            raise AssertionError(f"{label} exited with {code}: {self.tail(label)}")

    def tail(self, label: str, lines: int = 30) -> str:
        path = self.log_dir / f"{label}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def thread(self, host: Host) -> HostThread:
        """A thread inside `host`'s network namespace; stopped by `close()`."""
        pool = ThreadPoolExecutor(max_workers=1, initializer=enter_netns, initargs=(host.path,),
                                  thread_name_prefix=f"lab-{host.name}")
        self._threads.append(pool)
        return HostThread(pool)

    def close(self) -> None:
        """Stop every process (TERM, then KILL after a grace); delete the namespaces and workdir."""
        for _, process in reversed(self.processes):
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for _, process in reversed(self.processes):
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            stop(process)
        self.processes.clear()
        for pool in self._threads:
            pool.shutdown(wait=False, cancel_futures=True)
        for host in self.hosts.values():
            _ip("netns", "del", host.netns, check=False)
        if self._switch:
            _ip("netns", "del", self._switch, check=False)
        self.hosts.clear()
        shutil.rmtree(self.workdir, ignore_errors=True)


def stop(process: subprocess.Popen) -> None:
    """Kill a process group that is still there, and reap its leader."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@dataclass
class HostThread:
    """Run calls on a thread that lives in a host's network namespace."""

    pool: ThreadPoolExecutor

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return self.pool.submit(fn, *args, **kwargs).result()
