"""Refuse API requests whose body is larger than JUNCTION_MAX_REQUEST_BYTES with a 413.

DRF's parsers read the request stream directly, past Django's DATA_UPLOAD_MAX_MEMORY_SIZE
check, so the limit is enforced here, before any view runs, from the Content-Length header;
a body sent without one is cut at the limit by the WSGI stream and then fails to parse.
"""
from __future__ import annotations

from django.conf import settings
from django.http import JsonResponse

from config.errors import error_body


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
        return self.get_response(request)
