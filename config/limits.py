"""Refuse API requests before any view runs: too large (413), with control characters in a
header value, or with a NUL in a query parameter (400).

DRF's parsers read the request stream directly, past Django's DATA_UPLOAD_MAX_MEMORY_SIZE
check, so the size limit is enforced here from the Content-Length header; a body sent without
one is cut at the limit by the API's parser (config/parsers.py).

HTTP forbids control characters (NUL, CR, LF, …) in header values (RFC 9110 §5.5) and the
usual servers refuse them, but a header that reaches a view with one — `Idempotency-Key`
with a NUL, say — fails deep in the database adapter. Refusing them here makes that a 400
whatever server is in front.
"""
from __future__ import annotations

import re

from django.conf import settings
from django.http import JsonResponse

from config.errors import error_body

_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


class RequestSizeLimitMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path.startswith("/api/"):
            try:
                length = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = 0
            limit = settings.JUNCTION_MAX_REQUEST_BYTES
            if length > limit:
                return JsonResponse(
                    error_body("request_too_large",
                               f"The request body is {length} bytes; the limit is {limit} bytes.",
                               {"body": [f"At most {limit} bytes."]}),
                    status=413,
                )
            bad = next((key for key, value in request.META.items()
                        if key.startswith("HTTP_") and isinstance(value, str) and _CONTROL.search(value)), None)
            if bad is not None:
                name = bad[5:].replace("_", "-").title()
                return JsonResponse(
                    error_body("invalid_header", f"The {name} header has a control character.",
                               {name: ["Control characters (NUL, CR, LF, …) are not allowed in a header value."]}),
                    status=400,
                )
            # PostgreSQL cannot hold a NUL in a query's text: a filter or search term with one
            # would fail in the database adapter.
            param = next((key for key, values in request.GET.lists()
                          if "\x00" in key or any("\x00" in value for value in values)), None)
            if param is not None:
                name = param.replace("\x00", "\\x00")
                return JsonResponse(
                    error_body("invalid_query", f"The query parameter {name} has a NUL character.",
                               {name: ["The NUL character is not allowed in a query parameter."]}),
                    status=400,
                )
        return self.get_response(request)


class AsgiRequestSizeLimit:
    """ASGI middleware: answer 413 once a request body passes JUNCTION_MAX_REQUEST_BYTES.

    Django's ASGI handler reads the whole body (to a spooled temporary file) before any
    middleware runs, so `RequestSizeLimitMiddleware` cannot stop a body sent without a
    Content-Length (chunked) there. Wrap the ASGI application in this
    (`application = AsgiRequestSizeLimit(get_asgi_application())`): it refuses a declared
    Content-Length past the limit at once, and counts the bytes of a body as they arrive.
    """

    def __init__(self, app, *, limit: int | None = None):
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not scope.get("path", "").startswith("/api/"):
            return await self.app(scope, receive, send)
        limit = self.limit if self.limit is not None else settings.JUNCTION_MAX_REQUEST_BYTES
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return await self._refuse(send, limit)
        received = 0
        too_large = False

        async def bounded_receive():
            nonlocal received, too_large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    too_large = True
                    # End the body here; the handler must not see any of it.
                    return {"type": "http.disconnect"}
            return message

        started = False

        async def guarded_send(message):
            nonlocal started
            if too_large:
                return  # the 413 below answers instead
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, bounded_receive, guarded_send)
        except Exception:
            if not too_large:
                raise
        if too_large and not started:
            await self._refuse(send, limit)

    @staticmethod
    async def _refuse(send, limit: int) -> None:
        import json

        body = json.dumps(error_body("request_too_large", f"The request body is larger than the limit of {limit} bytes.",
                                     {"body": [f"At most {limit} bytes."]})).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})
