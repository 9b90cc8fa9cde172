"""A worker host's own `/metrics` listener (JUNCTION_WORKER_METRICS_PORT).

The pool processes of a worker host count into PROMETHEUS_MULTIPROC_DIR; the API cannot read
another host's files, so the worker's main process serves them on a port of its own, with
the same access rule as the API's `/metrics` (config/metrics.py `refusal`).
"""
from __future__ import annotations

import json
import logging
import threading
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.exposition import ThreadingWSGIServer

from config import metrics

logger = logging.getLogger(__name__)


def app(environ, start_response):
    refused = metrics.refusal(
        authorization=environ.get("HTTP_AUTHORIZATION", ""), remote_addr=environ.get("REMOTE_ADDR", ""),
        forwarded=any(k in environ for k in ("HTTP_X_FORWARDED_FOR", "HTTP_FORWARDED", "HTTP_X_REAL_IP")),
    )
    if refused:
        status, code, message = refused
        headers = [("Content-Type", "application/json")]
        if status == 401:
            headers.append(("WWW-Authenticate", 'Bearer realm="metrics"'))
        start_response(f"{status} {'Unauthorized' if status == 401 else 'Forbidden'}", headers)
        return [json.dumps({"code": code, "message": message, "details": {}}).encode()]
    body = generate_latest(metrics.host_registry())
    start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST)])
    return [body]


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # one line per scrape is noise
        return None


def start(addr: str, port: int) -> ThreadingWSGIServer:
    """Serve in a daemon thread; return the server (its `server_port` when `port` is 0)."""
    server = make_server(addr, port, app, ThreadingWSGIServer, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="junction-metrics", daemon=True).start()
    logger.info("serving this host's metrics on %s:%s", addr, server.server_port)
    return server
