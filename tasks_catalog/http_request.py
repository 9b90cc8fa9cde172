"""The `http_request` task type: an HTTP call, guarded against SSRF.

urllib3 is used directly (not requests) because the guard must choose the address: each hop's
URL is resolved and checked by `tasks_catalog.ssrf`, then the request goes to the checked IP
(on a kept-alive connection of `tasks_catalog.http_pools`, keyed by that IP) while the original
host name goes into the Host header, SNI and the certificate check. Redirects are followed here,
hop by hop, so each new destination is checked the same way; the response body is read in
chunks and abandoned (its connection closed) past JUNCTION_HTTP_MAX_RESPONSE_BYTES.
"""
from __future__ import annotations

import json
import time
from email.message import Message
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit, urlunsplit

import urllib3
from django.conf import settings
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    SSLError,
)

from config.jsonsize import loads_bounded
from tasks_catalog import http_pools
from tasks_catalog.base import TaskContext, TaskFailed, TaskType
from tasks_catalog.fields import FieldSpec
from tasks_catalog.ssrf import Destination, DestinationRefused, DestinationUnresolved, checked_destination

HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
MAX_REDIRECTS = 5
REDIRECT_STATUSES = {301, 302, 303, 307, 308}
# Besides 5xx: "try again later" answers.
TRANSIENT_STATUSES = {408, 429}
# Headers that must not follow a redirect to another origin.
ORIGIN_BOUND_HEADERS = {"authorization", "cookie", "proxy-authorization", "host"}
CHUNK_SIZE = 64 * 1024
ERROR_EXCERPT_CHARS = 300


class HttpRequest(TaskType):
    key = "http_request"
    slow = True
    name = "HTTP request"
    description = (
        "Send an HTTP request. A status outside ok_statuses fails the task. Private, loopback "
        "and link-local addresses are refused unless JUNCTION_SSRF_ALLOWED_NETWORKS allows them."
    )
    fields = (
        FieldSpec("method", "string", default="GET", choices=HTTP_METHODS, description="HTTP method."),
        FieldSpec("url", "string", required=True, min_length=1, max_length=2048,
                  description="An http or https URL.", example="https://example.com/api"),
        FieldSpec("headers", "object", default={}, description="Request headers."),
        FieldSpec("query", "object", default={}, description="Query-string parameters."),
        FieldSpec("json", "any", description="A JSON request body."),
        FieldSpec("timeout", "number", default=30, minimum=0.1, maximum=600, description="Seconds."),
        FieldSpec("ok_statuses", "array", items="integer",
                  description="Statuses that count as success; default 200-299."),
    )
    output_description = "The response: status code, headers, and the body (parsed when JSON)."
    output_schema = {
        "type": "object",
        "properties": {
            "status_code": {"type": "integer"},
            "headers": {"type": "object"},
            "body": {},
        },
    }

    def run(self, body: dict[str, Any], context: TaskContext) -> Any:
        method = (body.get("method") or "GET").upper()
        url = _with_query(body["url"], body.get("query") or {})
        headers = {str(name): _header_value(value) for name, value in (body.get("headers") or {}).items()}
        payload: bytes | None = None
        if body.get("json") is not None:
            payload = json.dumps(body["json"]).encode()
            if not any(name.lower() == "content-type" for name in headers):
                headers["Content-Type"] = "application/json"
        timeout = float(body.get("timeout") or 30)
        if context.timeout:
            timeout = min(timeout, context.timeout)
        ok_statuses = body.get("ok_statuses")
        deadline = time.monotonic() + timeout

        origin = None
        for _hop in range(MAX_REDIRECTS + 1):
            destination = _destination(url)
            if origin is not None and destination.origin != origin:
                headers = {k: v for k, v in headers.items() if k.lower() not in ORIGIN_BOUND_HEADERS}
            origin = destination.origin
            response = _send(destination, method, headers, payload, deadline, timeout)
            location = response.headers.get("location")
            redirect = (
                response.status in REDIRECT_STATUSES and location
                and not (ok_statuses and response.status in ok_statuses)
            )
            if not redirect:
                return _result(response, method, url, ok_statuses, deadline, timeout)
            _drain_redirect(response)
            url = urljoin(url, location)
            if response.status == 303 or (response.status in {301, 302} and method == "POST"):
                # What browsers and every client do: the redirected request is a GET without body.
                method = "GET" if method != "HEAD" else method
                payload = None
                headers = {k: v for k, v in headers.items() if k.lower() not in {"content-type", "content-length"}}
        raise TaskFailed(f"too many redirects (more than {MAX_REDIRECTS}), last to {url}")


def _with_query(url: str, query: dict[str, Any]) -> str:
    """Append `query` to the URL's own query string (lists repeat the parameter)."""
    if not query:
        return url
    pairs: list[tuple[str, str]] = []
    for name, value in query.items():
        for item in value if isinstance(value, list) else [value]:
            if item is not None:
                pairs.append((str(name), _query_value(item)))
    parts = urlsplit(url)
    extra = urlencode(pairs)
    return urlunsplit(parts._replace(query=f"{parts.query}&{extra}" if parts.query else extra))


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def _header_value(value: Any) -> str:
    text = value if isinstance(value, str) else _query_value(value)
    if "\r" in text or "\n" in text:
        raise TaskFailed("a header value may not contain a line break")
    return text


def _destination(url: str) -> Destination:
    try:
        return checked_destination(url)
    except DestinationRefused as exc:
        raise TaskFailed(str(exc)) from None
    except DestinationUnresolved as exc:
        raise TaskFailed(str(exc), transient=exc.transient) from None


def _remaining(deadline: float, timeout: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TaskFailed(f"timed out after {timeout:g} s", transient=True)
    return left


def _send(
    destination: Destination, method: str, headers: dict[str, str], payload: bytes | None,
    deadline: float, timeout: float,
) -> urllib3.BaseHTTPResponse:
    """Send the request to the first checked address that accepts a connection."""
    wire_headers = dict(headers)
    if not any(name.lower() == "host" for name in wire_headers):
        wire_headers["Host"] = destination.host_header
    last_error: Exception | None = None
    for address in destination.addresses:
        try:
            return http_pools.urlopen(
                destination, address, method, body=payload, headers=wire_headers,
                timeout=lambda: _remaining(deadline, timeout),
            )
        except NewConnectionError as exc:  # before ConnectTimeoutError: it is a subclass
            last_error = exc
        except ConnectTimeoutError:
            raise TaskFailed(f"timed out connecting to {destination.host_header}", transient=True) from None
        except ReadTimeoutError:
            raise TaskFailed(f"timed out after {timeout:g} s waiting for {destination.host_header}", transient=True) from None
        except SSLError as exc:
            raise TaskFailed(f"TLS error with {destination.host_header}: {exc}") from None
        except (ProtocolError, HTTPError) as exc:
            raise TaskFailed(f"connection to {destination.host_header} failed: {exc}", transient=True) from None
    reason = getattr(last_error, "reason", None) or last_error
    raise TaskFailed(f"cannot connect to {destination.host_header}: {_plain(reason)}", transient=True)


def _plain(error: Any) -> str:
    text = str(error)
    # urllib3 prefixes "<HTTPConnection object at 0x…>: "; keep the reason.
    return text.split(">: ", 1)[-1]


def _read_capped(response: urllib3.BaseHTTPResponse, deadline: float, timeout: float) -> bytes:
    """Read the (decoded) body, failing as soon as it exceeds the configured maximum."""
    limit = settings.JUNCTION_HTTP_MAX_RESPONSE_BYTES
    too_big = f"response body exceeds the limit of {limit} bytes (JUNCTION_HTTP_MAX_RESPONSE_BYTES)"
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit and "content-encoding" not in response.headers:
        raise TaskFailed(too_big)
    chunks: list[bytes] = []
    size = 0
    try:
        while True:
            _remaining(deadline, timeout)
            chunk = response.read1(CHUNK_SIZE)
            if not chunk:
                break
            size += len(chunk)
            if size > limit:
                raise TaskFailed(too_big)
            chunks.append(chunk)
    except ReadTimeoutError:
        raise TaskFailed(f"timed out after {timeout:g} s reading the response", transient=True) from None
    except (ProtocolError, HTTPError) as exc:
        raise TaskFailed(f"reading the response failed: {exc}", transient=True) from None
    return b"".join(chunks)


def _drain_redirect(response: urllib3.BaseHTTPResponse) -> None:
    """Read a redirect's small declared body so its connection can serve the next hop."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) <= CHUNK_SIZE:
        response.drain_conn()  # bounded by the length; errors leave the connection to discard
    http_pools.discard(response)


def _content_type(value: str) -> tuple[str, str]:
    message = Message()
    message["content-type"] = value or "application/octet-stream"
    return message.get_content_type(), message.get_content_charset() or "utf-8"


def _decode(raw: bytes, content_type: str) -> Any:
    media_type, charset = _content_type(content_type)
    try:
        text = raw.decode(charset, errors="replace")
    except LookupError:  # an unknown charset name
        text = raw.decode("utf-8", errors="replace")
    if media_type == "application/json" or media_type.endswith("+json"):
        if not text.strip():
            return None
        try:
            # Bounded: a body nested past Python's recursion limit must not crash the task.
            return loads_bounded(text, max_depth=settings.JUNCTION_MAX_JSON_DEPTH)
        except ValueError:  # malformed, or nested past JUNCTION_MAX_JSON_DEPTH
            return text  # announced as JSON but not parsed: keep the text
    return text


def _result(
    response: urllib3.BaseHTTPResponse, method: str, url: str, ok_statuses: list[int] | None,
    deadline: float, timeout: float,
) -> dict[str, Any]:
    try:
        if method == "HEAD":
            response.drain_conn()  # no body: this marks the response complete
            raw = b""
        else:
            raw = _read_capped(response, deadline, timeout)
    finally:
        http_pools.discard(response)
    status = response.status
    content = _decode(raw, response.headers.get("content-type", ""))
    ok = status in ok_statuses if ok_statuses else 200 <= status < 300
    if not ok:
        excerpt = content if isinstance(content, str) else json.dumps(content)
        excerpt = (excerpt or "")[:ERROR_EXCERPT_CHARS]
        shown = urlunsplit(urlsplit(url)._replace(query="", fragment=""))
        raise TaskFailed(
            f"{method} {shown} answered {status} {response.reason or ''}".rstrip()
            + (f": {excerpt}" if excerpt else ""),
            transient=status >= 500 or status in TRANSIENT_STATUSES,
        )
    headers: dict[str, Any] = {}
    for name, value in response.headers.items():
        name = name.lower()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return {"status_code": status, "headers": headers, "body": content}
