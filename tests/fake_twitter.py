"""A small fake of the Twitter API v2 on 127.0.0.1: `POST /2/tweets`, OAuth 1.0a verified.

The server knows the apps (consumer key → secret) and users (access token → secret) it was
given, recomputes the HMAC-SHA1 signature of each request with oauthlib and answers like the
real API: 401 for a bad signature or unknown key, 403 for a duplicate tweet of the same user,
201 with `{"data": {"id", "text"}}` otherwise. `script(text, 429, 503, …)` makes the next
requests with that text answer those statuses, in order (429 with x-rate-limit-* headers).
"""
from __future__ import annotations

import hmac
import itertools
import json
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from oauthlib.oauth1.rfc5849 import signature, utils

PROBLEMS = {
    401: ("Unauthorized", "Unauthorized"),
    403: ("Forbidden", "You are not allowed to create a Tweet with duplicate content."),
    429: ("Too Many Requests", "Too Many Requests"),
    503: ("Service Unavailable", "Service Unavailable"),
}
RATE_LIMIT_WINDOW = 900


def oauth_params(authorization: str) -> dict[str, str]:
    """The parameters of an `Authorization: OAuth …` header, percent-decoded."""
    return {key: utils.unescape(value) for key, value in utils.parse_authorization_header(authorization)}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "_Server"

    def log_message(self, format, *args):  # keep test output quiet
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if self.path.split("?", 1)[0] != "/2/tweets":
            return self._send(404, {"title": "Not Found Error", "status": 404, "detail": "Not Found"})
        fake = self.server.fake
        with fake.lock:
            fake.request_count += 1
            problem = fake.check_signature(self.command, f"http://{self.headers['Host']}{self.path}",
                                           self.headers.get("Authorization", ""))
        if problem:
            fake.rejections.append(problem)
            return self._problem(401)
        text = json.loads(raw or b"{}").get("text", "")
        user = oauth_params(self.headers["Authorization"])["oauth_token"]
        with fake.lock:
            scripted = fake.scripted[text].popleft() if fake.scripted[text] else None
            if scripted is None and text in fake.texts_by_user[user]:
                scripted = 403
            if scripted is None:
                tweet = {"id": str(next(fake.ids)), "text": text}
                fake.texts_by_user[user].add(text)
                fake.tweets.append({**tweet, "access_token": user})
        if scripted is not None:
            return self._problem(scripted)
        self._send(201, {"data": {**tweet, "edit_history_tweet_ids": [tweet["id"]]}})

    def _problem(self, status: int) -> None:
        title, detail = PROBLEMS.get(status, ("Error", "Error"))
        headers = {}
        if status == 429:
            headers = {"x-rate-limit-limit": "200", "x-rate-limit-remaining": "0",
                       "x-rate-limit-reset": str(int(time.time()) + RATE_LIMIT_WINDOW)}
        self._send(status, {"title": title, "detail": detail, "type": "about:blank", "status": status}, headers)

    def _send(self, status: int, payload: dict, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


@dataclass(frozen=True)
class _Secrets:
    """What oauthlib's signing function reads from a client."""

    client_secret: str
    resource_owner_secret: str


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # a client that gave up (a timeout test) is not an error of the server
    fake: "FakeTwitter"


class FakeTwitter:
    """The fake API; `consumers` and `tokens` map public keys to their secrets."""

    def __init__(self, consumers: dict[str, str], tokens: dict[str, str]) -> None:
        self.consumers, self.tokens = dict(consumers), dict(tokens)
        self.lock = threading.Lock()
        self.tweets: list[dict] = []
        self.rejections: list[str] = []
        self.request_count = 0
        self.texts_by_user: dict[str, set[str]] = defaultdict(set)
        self.scripted: dict[str, deque[int]] = defaultdict(deque)
        self.ids = itertools.count(1445880548472328192)
        self.seen_nonces: set[str] = set()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.fake = self
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def start(self) -> "FakeTwitter":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def script(self, text: str, *statuses: int) -> None:
        """Answer the next requests tweeting `text` with these statuses, in order."""
        with self.lock:
            self.scripted[text].extend(statuses)

    def check_signature(self, method: str, uri: str, authorization: str) -> str | None:
        """Return why the OAuth 1.0a header does not verify (None when it does)."""
        if not authorization.startswith("OAuth "):
            return "no OAuth authorization header"
        params = oauth_params(authorization)
        if params.get("oauth_signature_method") != "HMAC-SHA1":
            return "unsupported signature method"
        consumer_secret = self.consumers.get(params.get("oauth_consumer_key", ""))
        token_secret = self.tokens.get(params.get("oauth_token", ""))
        if consumer_secret is None or token_secret is None:
            return "unknown consumer key or access token"
        if abs(time.time() - int(params.get("oauth_timestamp", "0"))) > 300:
            return "stale timestamp"
        nonce = params.get("oauth_nonce", "")
        if not nonce or nonce in self.seen_nonces:
            return "missing or reused nonce"
        query = uri.split("?", 1)[1] if "?" in uri else ""
        collected = signature.collect_parameters(
            uri_query=query, headers={"Authorization": authorization}, exclude_oauth_signature=True
        )
        base = signature.signature_base_string(
            method, signature.base_string_uri(uri), signature.normalize_parameters(collected)
        )
        expected = signature.sign_hmac_sha1_with_client(base, _Secrets(consumer_secret, token_secret))
        if not hmac.compare_digest(expected, params.get("oauth_signature", "")):
            return "signature mismatch"
        self.seen_nonces.add(nonce)
        return None
