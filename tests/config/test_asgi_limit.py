"""The ASGI body limit (config/limits.py): a body past JUNCTION_MAX_REQUEST_BYTES is a 413
even without a Content-Length, and the application never sees it."""
from __future__ import annotations

import asyncio
import json

from config.limits import AsgiRequestSizeLimit


def call(app, chunks, headers=(), path="/api/interactions/"):
    messages = [{"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1}
                for i, chunk in enumerate(chunks)]
    sent = []

    async def receive():
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "path": path, "headers": list(headers)}
    asyncio.run(AsgiRequestSizeLimit(app, limit=100)(scope, receive, send))
    return sent


async def echo(scope, receive, send):
    """A stand-in for Django's handler: read the whole body, answer 200 with its length."""
    body = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise OSError("client went away")
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": str(len(body)).encode()})


def test_a_small_body_passes():
    sent = call(echo, [b"x" * 60, b"x" * 40])
    assert sent[0]["status"] == 200 and sent[1]["body"] == b"100"


def test_a_chunked_body_past_the_limit_is_413():
    sent = call(echo, [b"x" * 60] * 10)
    assert sent[0]["status"] == 413
    assert json.loads(sent[1]["body"])["code"] == "request_too_large"


def test_a_declared_length_past_the_limit_is_413_at_once():
    seen = []

    async def app(scope, receive, send):
        seen.append(scope)

    sent = call(app, [b""], headers=[(b"content-length", b"1000")])
    assert sent[0]["status"] == 413 and not seen


def test_other_paths_are_not_limited():
    assert call(echo, [b"x" * 60] * 10, path="/admin/")[0]["status"] == 200


def test_djangos_asgi_handler_never_reads_past_the_limit():
    from django.core.asgi import get_asgi_application

    sent = call(get_asgi_application(), [b"x" * 60] * 1000)
    assert sent[0]["status"] == 413
