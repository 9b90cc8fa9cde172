"""The local HTTP server the I/O scenarios call, and a measurement of its own ceiling.

`GET /echo?n=<int>&sleep_ms=<int>` answers `{"n": n + 1}` as JSON after `sleep_ms`
milliseconds (an asyncio sleep: the wait costs no CPU, like a remote API's latency). A chain
passes each answer's `n` to the next request, so every hop depends on the previous one.

aiohttp on asyncio, in `processes` processes sharing one port (SO_REUSEPORT), bound to
127.0.0.1 only; run as `python -m bench.httpserver PORT PROCESSES`.
"""
from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from aiohttp import web


async def echo(request: web.Request) -> web.Response:
    try:
        n = int(request.query.get("n", "0"))
        sleep_ms = int(request.query.get("sleep_ms", "0"))
    except ValueError:
        return web.json_response({"error": "n and sleep_ms must be integers"}, status=400)
    if sleep_ms > 0:
        await asyncio.sleep(min(sleep_ms, 10_000) / 1000)
    return web.Response(body=json.dumps({"n": n + 1}).encode(), content_type="application/json")


def serve(port: int) -> None:
    app = web.Application()
    app.router.add_get("/echo", echo)
    web.run_app(app, host="127.0.0.1", port=port, reuse_port=True, print=None,
                access_log=None, backlog=4096, handle_signals=True)


def start(port: int, processes: int, log_dir: Path) -> list[subprocess.Popen]:
    """Start the server processes in their own process groups; wait until the port answers."""
    log_dir.mkdir(parents=True, exist_ok=True)
    procs = []
    for i in range(processes):
        log = open(log_dir / f"httpserver-{i}.log", "wb")
        procs.append(subprocess.Popen([sys.executable, "-m", "bench.httpserver", str(port)],
                                      cwd=Path(__file__).resolve().parent.parent,
                                      stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        dead = [p for p in procs if p.poll() is not None]
        if dead:
            raise RuntimeError(f"HTTP server exited with {dead[0].returncode}; see {log_dir}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return procs
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("HTTP server did not start within 30 s")


async def _hammer(url: str, connections: int, seconds: float) -> int:
    import aiohttp

    done = 0
    deadline = time.monotonic() + seconds

    async def one_connection(session: aiohttp.ClientSession) -> None:
        nonlocal done
        while time.monotonic() < deadline:
            async with session.get(url) as response:
                await response.read()
            done += 1

    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(one_connection(session) for _ in range(connections)))
    return done


def ceiling(url: str, *, connections: int = 32, seconds: float = 3.0) -> float:
    """Requests per second the server answers (sleep_ms=0) to one asyncio client process.

    The client shares the 2 cores with the server, so this is a floor of the server's own
    ceiling; what matters is that it is far above what the scenarios ask of it.
    """
    started = time.monotonic()
    done = asyncio.run(_hammer(f"{url}?n=1&sleep_ms=0", connections, seconds))
    return done / (time.monotonic() - started)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    serve(int(sys.argv[1]))
