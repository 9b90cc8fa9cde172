"""The waiting crowd: many callers arriving at a steady rate, each waiting on a 10 s session.

Caller i sends `POST …/run/` with `Prefer: wait=30` at `start + i / rate` (open loop: arrivals
do not wait for answers) on an interaction of one 10 s `delay`, and records when its answer
came. Callers are asyncio tasks (aiohttp, one connection each) in one process per 1,000
callers; the whole crowd is bounded in time (arrivals + wait + 30 s).

`python -m bench.crowd [CALLERS [RATE]]` sends the crowd to a stub server that answers every
call after exactly 10 s: the client's own floor on this machine (every caller should be answered
within a few tens of milliseconds of 10 s), so a miss in the benchmark is the server's.
"""
from __future__ import annotations

import asyncio
import math
import multiprocessing as mp
import resource
import sys
import time
from typing import Any

WAIT_SECONDS = 30
ANSWER_LIMIT_SECONDS = 11.0
CALLERS_PER_PROCESS = 1000


def _raise_fd_limit(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


async def _caller(session, url: str, headers: dict[str, str], payload: dict, at: float) -> dict[str, Any]:
    import aiohttp

    await asyncio.sleep(max(0.0, at - time.time()))
    sent = time.time()
    try:
        async with session.post(url, json=payload, headers=headers,
                                timeout=aiohttp.ClientTimeout(total=WAIT_SECONDS + 15)) as response:
            data = await response.json(content_type=None) if response.status == 200 else None
            status = response.status
            error = None
    except Exception as exc:  # a refused or timed-out call is a result, not a crash
        status, data, error = None, None, (f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)[:200]
    return {"sent": sent, "received": time.time(), "status": status,
            "session_status": (data or {}).get("status"), "error": error}


async def _crowd(spec: dict[str, Any]) -> list[dict[str, Any]]:
    import aiohttp

    url = f"{spec['base_url']}/api/interactions/{spec['interaction']}/run/"
    headers = {"Authorization": f"Api-Key {spec['api_key']}", "Prefer": f"wait={WAIT_SECONDS}"}
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        callers = [_caller(session, url, headers, spec["input"], spec["start"] + i / spec["rate"])
                   for i in spec["indices"]]
        last_arrival = spec["start"] + max(spec["indices"], default=0) / spec["rate"]
        bound = last_arrival - time.time() + WAIT_SECONDS + 30
        return await asyncio.wait_for(asyncio.gather(*callers), timeout=bound)


def _crowd_process(spec: dict[str, Any], out) -> None:
    try:
        _raise_fd_limit(len(spec["indices"]) + 1024)
        out.put(asyncio.run(_crowd(spec)))
    except Exception as exc:
        out.put({"error": f"{type(exc).__name__}: {exc}"})


def run_crowd(*, base_url: str, api_key: str, interaction: str, callers: int, rate: float,
              delay_seconds: float) -> dict[str, Any]:
    """Send the crowd; return per-caller results and the summary figures."""
    processes = max(1, math.ceil(callers / CALLERS_PER_PROCESS))
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    start = time.time() + 3.0  # time for the client processes to start
    specs = [{"base_url": base_url, "api_key": api_key, "interaction": interaction, "input": {},
              "rate": rate, "start": start, "indices": list(range(p, callers, processes))}
             for p in range(processes)]
    procs = [ctx.Process(target=_crowd_process, args=(spec, out), daemon=True) for spec in specs]
    for proc in procs:
        proc.start()
    try:
        reports = [out.get(timeout=callers / rate + WAIT_SECONDS + 90) for _ in procs]
    finally:
        for proc in procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.terminate()
    failed = [r["error"] for r in reports if isinstance(r, dict)]
    if failed:
        raise RuntimeError(f"crowd client failed: {failed[0]}")
    results = [x for r in reports for x in r]
    return summarise_crowd(results, delay_seconds)


def summarise_crowd(results: list[dict[str, Any]], delay_seconds: float) -> dict[str, Any]:
    def answered(x: dict[str, Any]) -> bool:
        return x["status"] == 200 and x["session_status"] == "completed"

    # Past the delay; a call that got no finished session counts as never answered.
    excess = sorted(x["received"] - x["sent"] - delay_seconds if answered(x) else math.inf for x in results)
    statuses: dict[str, int] = {}
    for x in results:
        key = str(x["status"]) if x["status"] is not None else "error"
        statuses[key] = statuses.get(key, 0) + 1
    return {
        "callers": len(results),
        "answered_in_time": sum(1 for x in results if answered(x)
                                and x["received"] - x["sent"] <= ANSWER_LIMIT_SECONDS),
        "answered": sum(1 for x in results if answered(x)),
        "excess_p50": _rank(excess, 50),
        "excess_p99": _rank(excess, 99),
        "statuses": statuses,
        "errors": sorted({x["error"] for x in results if x["error"]})[:3],
    }


def _rank(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile (works with infinite values)."""
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def _stub_server(port: int, delay_seconds: float) -> None:
    from aiohttp import web

    async def run(request: web.Request) -> web.Response:
        await asyncio.sleep(delay_seconds)
        return web.json_response({"status": "completed"})

    app = web.Application()
    app.router.add_post("/api/interactions/{id}/run/", run)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None, backlog=4096)


def self_check(callers: int, rate: float, delay_seconds: float = 10.0) -> dict[str, Any]:
    """The crowd against the stub server (see the module docstring)."""
    from bench.stack import free_port

    _raise_fd_limit(callers + 1024)
    port = free_port()
    server = mp.get_context("spawn").Process(target=_stub_server, args=(port, delay_seconds), daemon=True)
    server.start()
    try:
        time.sleep(2)
        return run_crowd(base_url=f"http://127.0.0.1:{port}", api_key="stub", interaction="stub",
                         callers=callers, rate=rate, delay_seconds=delay_seconds)
    finally:
        server.terminate()
        server.join(timeout=10)


if __name__ == "__main__":
    print(self_check(int(sys.argv[1]) if len(sys.argv) > 1 else 2000,
                     float(sys.argv[2]) if len(sys.argv) > 2 else 100.0))
