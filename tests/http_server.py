"""A local HTTP server on 127.0.0.1 for `http_request` tests (http.server in a thread).

Routes:
- `/echo`: the request as JSON ({method, path, query, headers, body});
- `/text`: a text/plain body;
- `/status/<code>`: that status with a small JSON body;
- `/slow/<seconds>`: answers after sleeping;
- `/big/<bytes>`: that many bytes with a Content-Length;
- `/stream/<bytes>`: that many bytes without a length, in pieces, ending with the connection;
- `/redirect?to=<url>&status=<code>`: a redirect to `to`;
- `/loop`: a redirect to itself.
Every request is recorded in `requests` (method, path, headers, body).
"""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


@dataclass
class SeenRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "_Server"

    def log_message(self, format, *args):  # keep test output quiet
        pass

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.server.seen.append(SeenRequest(self.command, self.path, dict(self.headers), body))
        parts = urlsplit(self.path)
        route, _, arg = parts.path.strip("/").partition("/")
        query = parse_qs(parts.query)
        if route == "echo":
            self._json(200, {
                "method": self.command, "path": parts.path, "query": query,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": body.decode(),
            })
        elif route == "text":
            self._send(200, b"plain words", "text/plain; charset=utf-8")
        elif route == "status":
            self._json(int(arg), {"status": int(arg)})
        elif route == "slow":
            time.sleep(float(arg))
            self._json(200, {"slept": float(arg)})
        elif route == "big":
            self._send(200, b"x" * int(arg), "application/octet-stream")
        elif route == "stream":
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Connection", "close")
            self.end_headers()
            remaining = int(arg)
            while remaining > 0:
                piece = min(remaining, 16 * 1024)
                self.wfile.write(b"y" * piece)
                remaining -= piece
            self.close_connection = True
        elif route == "loop":
            self.send_response(302)
            self.send_header("Location", "/loop")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif route == "redirect":
            self.send_response(int(query.get("status", ["302"])[0]))
            self.send_header("Location", query["to"][0])
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            self._json(404, {"error": "no such route"})

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle

    def _json(self, status: int, payload) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # a client that gave up (a timeout test) is not an error of the server

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seen: list[SeenRequest] = []


class LocalHttpServer:
    """Start with `start()`, stop with `stop()`; `url(path)` builds a URL to it."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self._server = _Server((host, 0), _Handler)
        self.host = host
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def requests(self) -> list[SeenRequest]:
        return self._server.seen

    def url(self, path: str = "/", host: str | None = None) -> str:
        return f"http://{host or self.host}:{self.port}{path}"

    def start(self) -> "LocalHttpServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
