"""Refuse API requests before any view runs: too large (413), or with control characters in a
header value (400).

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
        return self.get_response(request)
