"""Kept-alive connections of `http_request`: a bounded per-process cache of urllib3 pools.

A pool is keyed by everything that defines its connections: the scheme, the checked IP address,
the port, the host name sent as Host, SNI and checked against the certificate, and the TLS
settings. `http_request` resolves and checks every hop's destination with the SSRF guard first
and only then asks here for the pool of one of the checked addresses, so a kept-alive
connection is only ever used for a request to an address that has just passed the check, under
the host name it was opened for.

- At most MAX_POOLS pools per process; the least recently used one is closed beyond that, and a
  pool unused for IDLE_SECONDS is closed at the next look-up.
- Fork: a process never uses pools its parent made (the cache belongs to the pid that made it
  and is dropped in a forked child), so two processes never share a socket.
- Threads: urllib3 pools are thread-safe; with block=False a pool opens as many connections as
  threads need at once and keeps up to MAX_IDLE_CONNECTIONS of them idle.
- A connection goes back to its pool only when its response was read to the end (urllib3
  returns it on the last read); `discard` closes one whose response was abandoned. A request
  that asked for `Connection: close` never leaves its connection in the pool.
- One retry, on a new connection, when a kept-alive connection turns out dead (the server closed
  it while it sat idle, just as the request went out) and resending is safe: see `ConnectionDropped`.
"""
from __future__ import annotations

import os
import ssl
import threading
import time
from collections import OrderedDict
from typing import Any, Callable, cast

import certifi
import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.exceptions import ClosedPoolError, ProtocolError

from tasks_catalog.ssrf import Destination, IPAddress

MAX_POOLS = 64
# As requests (pool_maxsize): enough for a threads pool of up to 10 threads calling one host
MAX_IDLE_CONNECTIONS = 10
IDLE_SECONDS = 60.0
# urllib3's Retry.DEFAULT_ALLOWED_METHODS: the methods it resends after the request went out.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"})
# How the peer closing a connection shows while sending the request or reading the status line.
_CLOSED_ERRORS = (ConnectionError, ssl.SSLEOFError, ssl.SSLZeroReturnError)


class ConnectionDropped(ProtocolError):
    """A kept-alive connection was closed by the server before any response; resending is safe.

    Raised (and handled in `urlopen`) when the connection came from the pool (a new connection
    that fails is a real failure), the server closed or reset it without sending a status line,
    and either no byte of the request was written (any method: the server cannot have seen it)
    or the method is idempotent. A POST or PATCH the server may have received is not resent
    here: that is the task's own `retries` to decide. This is what urllib3's default Retry does
    for idempotent methods, and what Go's net/http does for requests that were not written.
    """


class _TrackedConnection(HTTPConnection):
    """A connection that remembers how its current request went (read by `_Pool`)."""

    reused = False  # handed out by the pool with its socket already open
    wrote = False  # some of the current request was written to the socket
    close_after = False  # the current request said `Connection: close`

    def request(self, method: str, url: str, body: Any = None, headers: Any = None, **kwargs: Any) -> None:
        self.wrote = False
        self.close_after = any(
            str(name).lower() == "connection" and "close" in (token.strip() for token in str(value).lower().split(","))
            for name, value in (headers or {}).items()
        )
        super().request(method, url, body=body, headers=headers, **kwargs)

    def send(self, data: Any) -> None:
        # The request head is written first, in one piece that an idle socket's empty buffer
        # takes whole: a failure here means the server got nothing.
        super().send(data)
        self.wrote = True


class _TrackedHTTPSConnection(_TrackedConnection, HTTPSConnection):
    pass


class _Local(threading.local):
    fresh = False  # the next connection handed out must be a new one


_local = _Local()


class _Pool(urllib3.HTTPConnectionPool):
    ConnectionCls = _TrackedConnection

    def _get_conn(self, timeout: float | None = None) -> Any:
        # urllib3 has just closed the connection if the server had dropped it.
        conn = cast(_TrackedConnection, super()._get_conn(timeout))
        if _local.fresh and not conn.is_closed:
            conn.close()
        conn.reused = not conn.is_closed
        return conn

    def _put_conn(self, conn: Any) -> None:
        if conn is not None and conn.close_after:
            conn.close()
        if self.pool is not None and self.pool.full():
            # More connections were open at once than the pool keeps idle: close this one
            # quietly (urllib3 would log a warning for each).
            if conn is not None:
                conn.close()
            return
        super()._put_conn(conn)

    def _make_request(self, conn: Any, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return super()._make_request(conn, method, url, *args, **kwargs)
        except _CLOSED_ERRORS as exc:
            if not conn.reused:
                raise
            if not conn.wrote or method in IDEMPOTENT_METHODS:
                raise ConnectionDropped("Connection aborted.", exc) from exc
            # A TLS EOF too is a dropped connection (transient), not a TLS failure.
            raise ProtocolError("Connection aborted.", exc) from exc


class _HTTPSPool(_Pool, urllib3.HTTPSConnectionPool):
    ConnectionCls = _TrackedHTTPSConnection


class _Cache:
    """The pools of one process, least recently used first."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.lock = threading.Lock()
        self.pools: OrderedDict[tuple, tuple[_Pool, float]] = OrderedDict()


_cache = _Cache()


def _forget_after_fork() -> None:
    # The child drops its parent's pools unclosed: closing only the child's copies of the
    # sockets would not disturb the parent, but nothing here may touch them at all.
    global _cache
    _cache = _Cache()


os.register_at_fork(after_in_child=_forget_after_fork)


def pool_for(destination: Destination, address: IPAddress) -> urllib3.HTTPConnectionPool:
    """Return this process's pool of connections to the checked `address` for `destination`."""
    global _cache
    cache = _cache
    if cache.pid != os.getpid():  # forked without the hook (e.g. by a C extension)
        cache = _cache = _Cache()
    tls = ("CERT_REQUIRED", certifi.where()) if destination.scheme == "https" else None
    key = (destination.scheme, str(address), destination.port, destination.host, tls)
    now = time.monotonic()
    closing: list[_Pool] = []
    with cache.lock:
        entry = cache.pools.pop(key, None)
        pool = entry[0] if entry is not None else _new_pool(destination, address)
        cache.pools[key] = (pool, now)
        while len(cache.pools) > MAX_POOLS or next(iter(cache.pools.values()))[1] < now - IDLE_SECONDS:
            closing.append(cache.pools.popitem(last=False)[1][0])
    for old in closing:
        # A connection in use when its pool closes is closed when it is given back.
        old.close()
    return pool


def _new_pool(destination: Destination, address: IPAddress) -> _Pool:
    if destination.scheme == "https":
        return _HTTPSPool(
            str(address), destination.port, maxsize=MAX_IDLE_CONNECTIONS, block=False, retries=False,
            cert_reqs="CERT_REQUIRED", ca_certs=certifi.where(),
            server_hostname=destination.host, assert_hostname=destination.host,
        )
    return _Pool(str(address), destination.port, maxsize=MAX_IDLE_CONNECTIONS, block=False, retries=False)


def urlopen(
    destination: Destination, address: IPAddress, method: str, *, body: bytes | None,
    headers: dict[str, str], timeout: Callable[[], float],
) -> urllib3.BaseHTTPResponse:
    """Send the request to the checked `address`; return the response with its body unread.

    `timeout()` gives the seconds left (connect and read), asked again before the one retry.
    Read the body to the end (the connection then goes back to the pool) or call `discard`.
    Raises urllib3's errors as `HTTPConnectionPool.urlopen` does with retries disabled.
    """
    fresh = False
    for _attempt in range(4):  # one retry after a dropped connection, and room for evicted pools
        pool = pool_for(destination, address)
        left = timeout()
        _local.fresh = fresh
        try:
            return pool.urlopen(
                method, destination.target, body=body, headers=headers,
                redirect=False, retries=False, assert_same_host=False, preload_content=False,
                decode_content=True, timeout=urllib3.Timeout(connect=left, read=left),
            )
        except ConnectionDropped:
            if fresh:  # cannot happen: a new connection is never "dropped"; never loop
                raise
            fresh = True
        except ClosedPoolError:
            pass  # evicted by another thread between the look-up and the request; nothing was sent
        finally:
            _local.fresh = False
    raise ClosedPoolError(pool, "the pool was closed under every attempt")


def discard(response: urllib3.BaseHTTPResponse) -> None:
    """Close the response and, unless it was read to the end and given back, its connection."""
    response.close()  # closes the connection if the response still holds it
    response.release_conn()  # gives the (closed) connection's place back to its pool
