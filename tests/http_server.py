"""A local HTTP server on 127.0.0.1 for `http_request` tests (http.server in a thread).

Routes:
- `/echo`: the request as JSON ({method, path, query, headers, body});
- `/text`: a text/plain body;
- `/status/<code>`: that status with a small JSON body;
- `/slow/<seconds>`: answers after sleeping;
- `/big/<bytes>`: that many bytes with a Content-Length;
- `/stream/<bytes>`: that many bytes without a length, in pieces, ending with the connection;
- `/chunked/<bytes>`: that many bytes in chunks (the connection stays open);
- `/close`: a small JSON body, then the server closes the connection without saying so before
  (as a server does with a kept-alive connection that sat idle too long);
- `/redirect?to=<url>&status=<code>`: a redirect to `to`;
- `/loop`: a redirect to itself.
Every request is recorded in `requests` (method, path, headers, body, and the number of the
TCP connection it came on); `connections` counts the connections accepted. `drop_on_reuse = n`
makes the server read the next n requests that arrive on an already used connection and close
it without an answer: the keep-alive race as a client sees it. `pause_after_next_response(s)`
makes the handler of the next answered connection sleep before reading again (it notices
nothing the client does meanwhile).
"""
from __future__ import annotations

import json
import socket
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
    connection: int


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "_Server"

    def log_message(self, format, *args):  # keep test output quiet
        pass

    def setup(self) -> None:
        super().setup()
        self.connection_number = self.server.accepted(self.connection)
        self.served = 0

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.server.seen.append(SeenRequest(self.command, self.path, dict(self.headers), body, self.connection_number))
        self.served += 1
        if self.served > 1 and self.server.take_drop():
            self.close_connection = True
            return
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
        elif route == "chunked":
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            remaining = int(arg)
            while remaining > 0:
                piece = min(remaining, 16 * 1024)
                self.wfile.write(b"%x\r\n%s\r\n" % (piece, b"z" * piece))
                remaining -= piece
            self.wfile.write(b"0\r\n\r\n")
        elif route == "close":
            self._json(200, {"closing": True})
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
        pause = self.server.take_pause()
        if pause:
            self.wfile.flush()
            time.sleep(pause)

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
        self.connections = 0
        self.drop_on_reuse = 0
        self.pause_after_response = 0.0
        self.open_sockets: set = set()
        self.lock = threading.Lock()

    def accepted(self, sock) -> int:
        """Count a new connection; return its number (1, 2, …)."""
        with self.lock:
            self.connections += 1
            self.open_sockets.add(sock)
            return self.connections

    def take_drop(self) -> bool:
        with self.lock:
            if self.drop_on_reuse > 0:
                self.drop_on_reuse -= 1
                return True
            return False

    def take_pause(self) -> float:
        with self.lock:
            pause, self.pause_after_response = self.pause_after_response, 0.0
            return pause

    def shutdown_request(self, request):
        with self.lock:
            self.open_sockets.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Close every open connection, as a stopped server's process would."""
        with self.lock:
            sockets, self.open_sockets = self.open_sockets, set()
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class LocalHttpServer:
    """Start with `start()`, stop with `stop()`; `url(path)` builds a URL to it."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._server = _Server((host, port), _Handler)
        self.host = host
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def requests(self) -> list[SeenRequest]:
        return self._server.seen

    @property
    def connections(self) -> int:
        """How many TCP connections the server accepted."""
        return self._server.connections

    def drop_next_reused_requests(self, count: int = 1) -> None:
        self._server.drop_on_reuse = count

    def pause_after_next_response(self, seconds: float) -> None:
        """After its next answer, the connection's handler sleeps before it reads again."""
        self._server.pause_after_response = seconds

    def url(self, path: str = "/", host: str | None = None) -> str:
        return f"http://{host or self.host}:{self.port}{path}"

    def start(self) -> "LocalHttpServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._server.close_connections()
