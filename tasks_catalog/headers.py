"""Which HTTP response headers a `response` task may set.

The headers of a `response` task become the headers of Junction's own HTTP response. A value
with CR or LF could split it (a 500 from Django at best), and a framing or hop-by-hop header
(`Content-Length`, `Transfer-Encoding`, `Connection`, …) describes the connection the server
owns: set by a user, it desynchronises a keep-alive connection or a proxy in front. Such
headers are refused when the definition is saved (naming task and field) and again when the
task runs, since a value may come from a reference. Pure: no Django.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

MAX_HEADERS = 50
MAX_NAME_LENGTH = 256
MAX_VALUE_LENGTH = 8192

# RFC 9110 §5.1: a field name is a token.
TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
# RFC 9110 §5.5: visible characters, space, tab and obs-text (Latin-1); nothing else.
FIELD_VALUE = re.compile(r"^[\t\x20-\x7e\x80-\xff]*$")

# Framing, hop-by-hop and server-owned headers (RFC 9110 §7.6.1, RFC 9112 §6-7).
FORBIDDEN = frozenset({
    "connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding",
    "upgrade", "content-length", "content-encoding", "host", "http2-settings",
})
FORBIDDEN_PREFIXES = ("proxy-",)


def header_name_problem(name: Any) -> str | None:
    """Return why `name` cannot be a response header, or None."""
    if not isinstance(name, str) or not name:
        return "A header name must be a non-empty string."
    if len(name) > MAX_NAME_LENGTH:
        return f"Header name {name[:32]!r}… is longer than {MAX_NAME_LENGTH} characters."
    if not TOKEN.match(name):
        return f"Header name {name!r} has characters a header name cannot have (e.g. spaces, ':', CR, LF)."
    lower = name.lower()
    if lower in FORBIDDEN or lower.startswith(FORBIDDEN_PREFIXES):
        return (f"Header {name!r} is a framing or hop-by-hop header the server sets itself; "
                f"a response task cannot set it.")
    return None


def header_value_problem(name: str, value: Any) -> str | None:
    """Return why `value` cannot be the value of header `name`, or None."""
    if not isinstance(value, str):
        return f"The value of header {name!r} must be a string."
    if len(value) > MAX_VALUE_LENGTH:
        return f"The value of header {name!r} is longer than {MAX_VALUE_LENGTH} characters."
    if not FIELD_VALUE.match(value):
        return (f"The value of header {name!r} has a control character (CR, LF, NUL…) or a "
                f"character outside Latin-1.")
    return None


def header_problems(headers: Any, *, unresolved: Callable[[Any], bool] = lambda value: False) -> list[str]:
    """Return the problems of a response task's `headers` (empty when they may be sent).

    Values for which `unresolved(value)` is true (references, at save time) are checked when
    the task runs.
    """
    if not isinstance(headers, dict):
        return ["Must be an object mapping header names to string values."]
    problems: list[str] = []
    if len(headers) > MAX_HEADERS:
        problems.append(f"At most {MAX_HEADERS} headers.")
    for name, value in headers.items():
        problem = header_name_problem(name)
        if problem is None and not unresolved(value):
            problem = header_value_problem(name, value)
        if problem:
            problems.append(problem)
    return problems


def sendable_headers(headers: Any) -> dict[str, str]:
    """Return the headers that may be sent, dropping any other (a backstop for stored data)."""
    if not isinstance(headers, dict):
        return {}
    return {
        name: value for name, value in list(headers.items())[:MAX_HEADERS]
        if header_name_problem(name) is None and header_value_problem(name, value) is None
    }
