"""A small fake of the Twitter API on 127.0.0.1: `POST /2/tweets` and the OAuth 1.0a dance.

The server knows the apps (consumer key → secret) and users (access token → secret) it was
given, recomputes the HMAC-SHA1 signature of each request with oauthlib and answers like the
real API: 401 for a bad signature or unknown key, 403 for a duplicate tweet of the same user,
201 with `{"data": {"id", "text"}}` otherwise. `script(text, 429, 503, …)` makes the next
requests with that text answer those statuses, in order (429 with x-rate-limit-* headers).
Every tweet records the access token that signed it (`tweets`, `calls`).

The three-legged dance, as Twitter runs it:
- `POST /oauth/request_token`, signed with the consumer's key alone and carrying
  `oauth_callback`, answers a request token (form-encoded, `oauth_callback_confirmed=true`);
- `GET /oauth/authorize?oauth_token=…` stands for the page where the account owner signs in and
  approves: it redirects (302) to the callback with `oauth_token` and `oauth_verifier`
  (`&screen_name=` chooses who signs in; `&deny=1` declines: the callback gets `denied=`);
- `POST /oauth/access_token`, signed with the request token and carrying the verifier, answers
  a new access token for that account (`oauth_token`, `oauth_token_secret`, `user_id`,
  `screen_name`), which then signs API calls. A request token is exchanged once.
"""
from __future__ import annotations

import hmac
import itertools
import json
import secrets
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlencode, urlsplit

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

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] != "/oauth/authorize":
            return self._send(404, {"title": "Not Found Error", "status": 404, "detail": "Not Found"})
        query = dict(parse_qsl(urlsplit(self.path).query))
        location = self.server.fake.authorize(query.get("oauth_token", ""), screen_name=query.get("screen_name"),
                                              deny=query.get("deny") == "1")
        if location is None:
            return self._form(401, {"error": "unknown request token"})
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        path = self.path.split("?", 1)[0]
        fake = self.server.fake
        uri = f"http://{self.headers['Host']}{self.path}"
        authorization = self.headers.get("Authorization", "")
        form = raw.decode() if "application/x-www-form-urlencoded" in (self.headers.get("Content-Type") or "") else ""
        if path == "/oauth/request_token":
            answer, problem = fake.request_token(uri, authorization, form)
            return self._form(401, {"error": problem}) if problem else self._form(200, answer)
        if path == "/oauth/access_token":
            answer, problem = fake.access_token(uri, authorization, form)
            return self._form(401, {"error": problem}) if problem else self._form(200, answer)
        if path != "/2/tweets":
            return self._send(404, {"title": "Not Found Error", "status": 404, "detail": "Not Found"})
        with fake.lock:
            fake.request_count += 1
            problem = fake.check_signature(self.command, uri, authorization)
        if problem:
            fake.rejections.append(problem)
            return self._problem(401)
        text = json.loads(raw or b"{}").get("text", "")
        user = oauth_params(self.headers["Authorization"])["oauth_token"]
        with fake.lock:
            fake.calls.append({"method": self.command, "path": path, "access_token": user})
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

    def _form(self, status: int, payload: dict[str, str]) -> None:
        """Answer form-encoded, as Twitter's OAuth endpoints do."""
        body = urlencode(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/x-www-form-urlencoded")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

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
        self.calls: list[dict] = []  # every verified API call: method, path, access_token
        self.rejections: list[str] = []
        # The dance: request token → {consumer_key, secret, callback, verifier, screen_name}.
        self.request_tokens: dict[str, dict] = {}
        self.user_ids = itertools.count(1000001)
        self.connected: list[dict] = []  # every access token issued: screen_name, user_id, access_token
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

    def request_token(self, uri: str, authorization: str, form: str) -> tuple[dict[str, str], str | None]:
        """`POST /oauth/request_token`: a new request token for the signing consumer."""
        with self.lock:
            problem = self.check_signature("POST", uri, authorization, form=form, consumer_only=True)
            if problem:
                self.rejections.append(problem)
                return {}, problem
            params = oauth_params(authorization)
            if not params.get("oauth_callback"):
                return {}, "oauth_callback missing"
            token, secret = f"rt-{secrets.token_hex(8)}", secrets.token_urlsafe(24)
            self.request_tokens[token] = {"consumer_key": params["oauth_consumer_key"], "secret": secret,
                                          "callback": params["oauth_callback"], "verifier": None}
        return {"oauth_token": token, "oauth_token_secret": secret, "oauth_callback_confirmed": "true"}, None

    def authorize(self, token: str, *, screen_name: str | None, deny: bool) -> str | None:
        """The account owner approves (or declines) at `GET /oauth/authorize`: where to send them."""
        with self.lock:
            pending = self.request_tokens.get(token)
            if pending is None:
                return None
            if deny:
                del self.request_tokens[token]
                answer = {"denied": token}
            else:
                pending["verifier"] = secrets.token_urlsafe(16)
                pending["screen_name"] = screen_name or "junction_fan"
                answer = {"oauth_token": token, "oauth_verifier": pending["verifier"]}
        callback = pending["callback"]
        return f"{callback}{'&' if '?' in callback else '?'}{urlencode(answer)}"

    def access_token(self, uri: str, authorization: str, form: str) -> tuple[dict[str, str], str | None]:
        """`POST /oauth/access_token`: exchange an approved request token and its verifier, once."""
        with self.lock:
            secrets_of_requests = {token: pending["secret"] for token, pending in self.request_tokens.items()}
            problem = self.check_signature("POST", uri, authorization, form=form, token_secrets=secrets_of_requests)
            params = oauth_params(authorization) if not problem else {}
            pending = self.request_tokens.get(params.get("oauth_token", "")) or {}
            if not problem and not pending:
                problem = "unknown request token"
            if not problem and pending["consumer_key"] != params["oauth_consumer_key"]:
                problem = "request token of another consumer"
            verifier = {**params, **dict(parse_qsl(form))}.get("oauth_verifier", "")
            if not problem and (pending["verifier"] is None or not hmac.compare_digest(pending["verifier"], verifier)):
                problem = "wrong or missing oauth_verifier"
            if problem:
                self.rejections.append(problem)
                return {}, problem
            del self.request_tokens[params["oauth_token"]]
            user_id = str(next(self.user_ids))
            token, secret = f"{user_id}-{secrets.token_hex(12)}", secrets.token_urlsafe(30)
            self.tokens[token] = secret
            self.connected.append({"screen_name": pending["screen_name"], "user_id": user_id, "access_token": token})
        return {"oauth_token": token, "oauth_token_secret": secret, "user_id": user_id,
                "screen_name": pending["screen_name"]}, None

    def check_signature(
        self, method: str, uri: str, authorization: str, *, form: str = "",
        token_secrets: dict[str, str] | None = None, consumer_only: bool = False,
    ) -> str | None:
        """Return why the OAuth 1.0a header does not verify (None when it does).

        The token is looked up in `token_secrets` (the access tokens by default); with
        `consumer_only` the request must be signed by the consumer alone, with no token.
        Form-encoded body parameters are signed too.
        """
        if not authorization.startswith("OAuth "):
            return "no OAuth authorization header"
        params = oauth_params(authorization)
        if params.get("oauth_signature_method") != "HMAC-SHA1":
            return "unsupported signature method"
        consumer_secret = self.consumers.get(params.get("oauth_consumer_key", ""))
        if consumer_only:
            token_secret = "" if "oauth_token" not in params else None
        else:
            table = self.tokens if token_secrets is None else token_secrets
            token_secret = table.get(params.get("oauth_token", ""))
        if consumer_secret is None or token_secret is None:
            return "unknown consumer key or access token"
        if abs(time.time() - int(params.get("oauth_timestamp", "0"))) > 300:
            return "stale timestamp"
        nonce = params.get("oauth_nonce", "")
        if not nonce or nonce in self.seen_nonces:
            return "missing or reused nonce"
        query = uri.split("?", 1)[1] if "?" in uri else ""
        collected = signature.collect_parameters(
            uri_query=query, body=form or None, headers={"Authorization": authorization}, exclude_oauth_signature=True
        )
        base = signature.signature_base_string(
            method, signature.base_string_uri(uri), signature.normalize_parameters(collected)
        )
        expected = signature.sign_hmac_sha1_with_client(base, _Secrets(consumer_secret, token_secret))
        if not hmac.compare_digest(expected, params.get("oauth_signature", "")):
            return "signature mismatch"
        self.seen_nonces.add(nonce)
        return None
