"""Prometheus metrics (prometheus_client): what a process counts, and `/metrics`.

Counting never costs a task or a request a round trip: a counter is a number in this
process's memory, or — with PROMETHEUS_MULTIPROC_DIR set, as for uvicorn's worker processes
and Celery's prefork pool — in a memory-mapped file of that directory, one per process, which
an exposition on the same host adds up. A directory serves one host: every process of the
host that is exposed must share it. `/metrics` of the API exposes its host's directory; a
worker host exposes its own with JUNCTION_WORKER_METRICS_PORT (config/celery.py).

Cluster-wide facts are read when Prometheus scrapes the API, never when work happens: queue
depths (the broker), live workers (a Celery ping), and active and stalled sessions (one
indexed count each in PostgreSQL).

`/metrics` wants `Authorization: Bearer <JUNCTION_METRICS_TOKEN>`; with no token configured
it answers only loopback clients that came through no proxy (docs/operations.md).
"""
from __future__ import annotations

import glob
import hmac
import logging
import os
import re
import time
from datetime import timedelta
from typing import Any, Iterable

MULTIPROC_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None
if MULTIPROC_DIR:  # must exist before the first metric is made
    os.makedirs(MULTIPROC_DIR, exist_ok=True)

from django.conf import settings  # noqa: E402
from django.http import HttpRequest, HttpResponse, JsonResponse  # noqa: E402
from prometheus_client import (  # noqa: E402
    CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics,
    generate_latest, multiprocess,
)
from prometheus_client.core import GaugeMetricFamily  # noqa: E402
from prometheus_client.registry import Collector  # noqa: E402

from interactions.statuses import COMPLETED, FAILED, SESSION_TERMINAL  # noqa: E402

logger = logging.getLogger(__name__)
disable_created_metrics()  # the same series with or without the multiprocess mode

SESSION_STATUSES = tuple(str(status) for status in SESSION_TERMINAL)
TASK_STATUSES = (str(COMPLETED), str(FAILED))  # what a task that ran ends as
SWEEPER_ACTIONS = ("timed_out", "resumed", "abandoned", "waiting")
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
SESSION_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)

SESSIONS_STARTED = Counter("junction_sessions_started", "Sessions started.")
SESSIONS_FINISHED = Counter("junction_sessions_finished", "Sessions finished, by status.", ["status"])
SESSION_DURATION = Histogram(
    "junction_session_duration_seconds", "Session run time (creation to end), by interaction and status.",
    ["interaction", "status"], buckets=SESSION_BUCKETS)
TASK_DURATION = Histogram(
    "junction_task_duration_seconds", "Task run time, by task type and status.", ["type", "status"], buckets=BUCKETS)
HTTP_REQUESTS = Counter(
    "junction_http_requests", "HTTP requests answered, by method, route pattern and status.",
    ["method", "route", "status"])
HTTP_DURATION = Histogram(
    "junction_http_request_duration_seconds", "Time to answer an HTTP request, by method and route pattern.",
    ["method", "route"], buckets=BUCKETS)
THROTTLED = Counter("junction_throttled", "Calls refused with 429 (rate limited), by route pattern.", ["route"])
SWEEPER = Counter("junction_sweeper_actions", "Sessions the sweeper acted on, by action.", ["action"])
SESSIONS_PURGED = Counter("junction_sessions_purged", "Finished sessions deleted by retention.")
PROCESSES = Gauge("junction_processes", "Live Junction processes on this host, by kind (api, worker).",
                  ["kind"], multiprocess_mode="livesum")

for _status in SESSION_STATUSES:
    SESSIONS_FINISHED.labels(_status)
for _action in SWEEPER_ACTIONS:
    SWEEPER.labels(_action)


# --- what callers count -----------------------------------------------------------------------

def session_started() -> None:
    SESSIONS_STARTED.inc()


def session_finished(status: str, seconds: float | None = None, interaction: Any = None) -> None:
    """Count a session's end; with `seconds`, observe its duration (labelled by interaction
    when JUNCTION_METRICS_PER_INTERACTION, else `interaction=""`)."""
    SESSIONS_FINISHED.labels(status).inc()
    if seconds is not None:
        label = str(interaction) if interaction is not None and settings.JUNCTION_METRICS_PER_INTERACTION else ""
        SESSION_DURATION.labels(label, status).observe(max(seconds, 0.0))


def task_finished(task_type: str, status: str, seconds: float) -> None:
    TASK_DURATION.labels(task_type, status).observe(max(seconds, 0.0))


def sweeper_acted(*, timed_out: int = 0, resumed: int = 0, abandoned: int = 0, waiting: int = 0) -> None:
    for action, count in (("timed_out", timed_out), ("resumed", resumed), ("abandoned", abandoned),
                          ("waiting", waiting)):
        if count:
            SWEEPER.labels(action).inc(count)


def sessions_purged(count: int) -> None:
    if count:
        SESSIONS_PURGED.inc(count)


def process_started(kind: str) -> None:
    """Count this process as a live one of `kind` (dropped from the sum when it exits)."""
    PROCESSES.labels(kind).set(1)


def process_exited(pid: int | None = None) -> None:
    """Drop an exited process's live gauges (multiprocess mode); its counters stay counted."""
    if MULTIPROC_DIR:
        multiprocess.mark_process_dead(pid or os.getpid(), MULTIPROC_DIR)


def _mark_dead_processes() -> None:
    """Drop the live gauges of processes of this host that died without saying so (SIGKILL)."""
    if not MULTIPROC_DIR:
        return
    pids = {int(m.group(1)) for path in glob.glob(os.path.join(MULTIPROC_DIR, "gauge_live*_*.db"))
            if (m := re.search(r"_(\d+)\.db$", path))}
    for pid in pids:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            process_exited(pid)
        except PermissionError:
            pass  # alive, another user's


# --- HTTP requests ----------------------------------------------------------------------------

_GROUP = re.compile(r"\(\?P<(\w+)>[^)]*\)")


def route_of(request: HttpRequest) -> str:
    """The URL pattern that answered (`api/interactions/<pk>/run/`), never the raw path."""
    match = getattr(request, "resolver_match", None)
    if match is None or match.route is None:
        return "unmatched"
    return "/" + _GROUP.sub(r"<\1>", match.route).replace("^", "").replace("$", "")


class RequestMetricsMiddleware:
    """Count each request by route pattern and status, and time it."""

    def __init__(self, get_response):
        self.get_response = get_response
        process_started("api")

    def __call__(self, request):
        started = time.monotonic()
        response = self.get_response(request)
        try:
            route = route_of(request)
            HTTP_REQUESTS.labels(request.method, route, str(response.status_code)).inc()
            HTTP_DURATION.labels(request.method, route).observe(time.monotonic() - started)
            if response.status_code == 429:
                THROTTLED.labels(route).inc()
        except Exception:  # a metric never breaks a request
            logger.debug("could not count a request", exc_info=True)
        return response


# --- read at scrape time ----------------------------------------------------------------------

class ClusterCollector(Collector):
    """Facts about the whole deployment, read when Prometheus scrapes the API."""

    def collect(self) -> Iterable[GaugeMetricFamily]:
        up = GaugeMetricFamily("junction_collector_up", "1 if this scrape could read the source, by source.",
                               labels=["source"])
        yield from self._queues(up)
        yield from self._workers(up)
        yield from self._sessions(up)
        yield up

    @staticmethod
    def _queues(up: GaugeMetricFamily):
        from config.celery import queue_depths

        depths = queue_depths()
        up.add_metric(["broker"], 0 if depths is None else 1)
        family = GaugeMetricFamily("junction_queue_depth", "Messages waiting in each Celery queue.", labels=["queue"])
        for name, depth in (depths or {}).items():
            family.add_metric([name], depth)
        yield family

    @staticmethod
    def _workers(up: GaugeMetricFamily):
        from config.celery import app

        try:
            replies = app.control.ping(timeout=settings.JUNCTION_METRICS_PING_SECONDS) or []
            names = sorted(name for reply in replies for name in reply)
            up.add_metric(["workers"], 1)
        except Exception:
            logger.debug("no worker ping", exc_info=True)
            up.add_metric(["workers"], 0)
            return
        yield GaugeMetricFamily("junction_workers", "Celery workers that answered a ping during this scrape.",
                                value=len(names))
        family = GaugeMetricFamily("junction_worker_up", "1 for each Celery worker that answered a ping.",
                                   labels=["worker"])
        for name in names:
            family.add_metric([name], 1)
        yield family

    @staticmethod
    def _sessions(up: GaugeMetricFamily):
        from django.db.models import Count
        from django.utils import timezone

        from interactions.models import Session

        active = (Session.Status.QUEUED, Session.Status.RUNNING)
        try:
            counts = dict(Session.objects.filter(status__in=active).values_list("status")
                          .annotate(n=Count("id")).order_by())
            stalled_before = timezone.now() - timedelta(seconds=settings.JUNCTION_STALL_SECONDS)
            stalled = Session.objects.filter(status__in=active, updated_at__lt=stalled_before).count()
            up.add_metric(["database"], 1)
        except Exception:
            logger.debug("no session counts", exc_info=True)
            up.add_metric(["database"], 0)
            return
        family = GaugeMetricFamily("junction_sessions_active", "Sessions queued or running (in flight), by status.",
                                   labels=["status"])
        for status in active:
            family.add_metric([status], counts.get(status, 0))
        yield family
        yield GaugeMetricFamily(
            "junction_sessions_stalled",
            "Active sessions without progress for JUNCTION_STALL_SECONDS (the sweeper resumes them).", value=stalled)


_cluster = CollectorRegistry()  # no auto_describe: registering must not read anything
_cluster.register(ClusterCollector())


def host_registry() -> CollectorRegistry:
    """The metrics of this host's processes (all of them in the multiprocess mode)."""
    if not MULTIPROC_DIR:
        return REGISTRY
    _mark_dead_processes()
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, MULTIPROC_DIR)
    return registry


def render() -> str:
    """Return this host's metrics and the deployment's, in the Prometheus text format."""
    return (generate_latest(host_registry()) + generate_latest(_cluster)).decode()


# --- access -----------------------------------------------------------------------------------

LOOPBACK = ("127.", "::1", "::ffff:127.")


def refusal(*, authorization: str, remote_addr: str, forwarded: bool) -> tuple[int, str, str] | None:
    """Why a scrape is refused as (status, code, message), or None when it may read.

    A bearer token when JUNCTION_METRICS_TOKEN is set; otherwise a loopback client that no
    proxy forwarded (a proxy on the same host would make every client look local).
    """
    token = settings.JUNCTION_METRICS_TOKEN
    if token:
        scheme, _, given = authorization.partition(" ")
        if scheme.lower() != "bearer" or not given:
            return 401, "not_authenticated", "The metrics need `Authorization: Bearer <token>`."
        if not hmac.compare_digest(given.strip().encode(), token.encode()):
            return 403, "permission_denied", "This token may not read the metrics."
        return None
    if forwarded or not remote_addr.startswith(LOOPBACK):
        return 403, "permission_denied", (
            "The metrics answer only local clients unless JUNCTION_METRICS_TOKEN is set.")
    return None


def metrics_view(request: HttpRequest) -> HttpResponse:
    refused = refusal(
        authorization=request.headers.get("Authorization", ""), remote_addr=request.META.get("REMOTE_ADDR", ""),
        forwarded=any(h in request.headers for h in ("X-Forwarded-For", "Forwarded", "X-Real-IP")),
    )
    if refused:
        status, code, message = refused
        response = JsonResponse({"code": code, "message": message, "details": {}}, status=status)
        if status == 401:
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(render(), content_type=CONTENT_TYPE_LATEST)
