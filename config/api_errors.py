"""The API's one exception handler: every error a request meets, in the one error shape.

`{"code": ..., "message": ..., "details": {...}}` for every 4xx/5xx the API returns: the
application errors of `config.errors` (mapped by kind in `STATUS_OF`), DRF's own exceptions,
database and broker failures, through `api_exception_handler` (REST_FRAMEWORK's
EXCEPTION_HANDLER); Django's own 404/500 (unknown URLs, crashes) through `handler404` /
`handler500` in `config.urls`. Validation errors put each offending field, as a dotted path
(`tasks.fetch.body.url`), into `details`, mapped to its messages.

This is the only module that knows which status an application error gets.
"""
from __future__ import annotations

import logging
import math
from typing import Any

from django.core.exceptions import ObjectDoesNotExist, PermissionDenied
from django.db import DatabaseError, DataError, IntegrityError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views.defaults import page_not_found, server_error
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler
from rest_framework_simplejwt.exceptions import InvalidToken

from config.errors import (
    UNAVAILABLE,
    Conflict,
    DomainError,
    Forbidden,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    Unauthenticated,
    Unavailable,
    Unprocessable,
    error_body,
    summary,
)

logger = logging.getLogger(__name__)

# The status of each kind of application error (the most specific class found in its MRO wins).
STATUS_OF: dict[type[DomainError], int] = {
    InvalidInput: status.HTTP_400_BAD_REQUEST,
    Unauthenticated: status.HTTP_401_UNAUTHORIZED,
    Forbidden: status.HTTP_403_FORBIDDEN,
    NotFound: status.HTTP_404_NOT_FOUND,
    Conflict: status.HTTP_409_CONFLICT,
    PayloadTooLarge: status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
    Unprocessable: status.HTTP_422_UNPROCESSABLE_ENTITY,
    RateLimited: status.HTTP_429_TOO_MANY_REQUESTS,
    Unavailable: status.HTTP_503_SERVICE_UNAVAILABLE,
    DomainError: status.HTTP_400_BAD_REQUEST,
}


def status_of(error: DomainError) -> int:
    """The HTTP status of an application error."""
    return next(STATUS_OF[kind] for kind in type(error).__mro__ if kind in STATUS_OF)


def domain_response(error: DomainError) -> Response:
    """Render an application error: its status, the error shape, Retry-After when limited."""
    headers = {}
    if isinstance(error, RateLimited):
        headers["Retry-After"] = str(max(1, math.ceil(error.retry_after)))
    return Response(error_body(error.code, error.message, error.details), status=status_of(error), headers=headers)


def flatten_details(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    """Flatten DRF's nested error detail into `{"a.b.c": ["message", ...]}`."""
    flat: dict[str, list[str]] = {}
    if isinstance(detail, dict):
        for key, value in detail.items():
            path = str(key) if not prefix else f"{prefix}.{key}"
            if key == "non_field_errors":
                path = prefix or "non_field_errors"
            for sub, messages in flatten_details(value, path).items():
                flat.setdefault(sub, []).extend(messages)
    elif isinstance(detail, list):
        if all(not isinstance(item, (dict, list)) for item in detail):
            flat[prefix or "non_field_errors"] = [str(item) for item in detail]
        else:
            for index, item in enumerate(detail):
                if item:
                    path = f"{prefix}.{index}" if prefix else str(index)
                    for sub, messages in flatten_details(item, path).items():
                        flat.setdefault(sub, []).extend(messages)
    else:
        flat[prefix or "non_field_errors"] = [str(detail)]
    return flat


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Render any exception raised in a DRF view in the one error shape."""
    if isinstance(exc, Unauthenticated):
        # DRF's own 401, so that the response names the scheme (WWW-Authenticate) as its others do.
        exc = exceptions.AuthenticationFailed(exc.message, code=exc.code)
    elif isinstance(exc, DomainError):
        return domain_response(exc)
    if isinstance(exc, (Http404, ObjectDoesNotExist)):
        # ObjectDoesNotExist: the object went away while the request ran (deleted meanwhile).
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    elif isinstance(exc, DataError):
        # A value the database cannot store (e.g. a NUL character in JSON): the input's fault.
        return Response(
            error_body("unstorable_value", f"The database cannot store a value of this request: "
                       f"{str(exc).splitlines()[0]}"),
            status=status.HTTP_400_BAD_REQUEST,
        )
    elif isinstance(exc, IntegrityError):
        # A constraint the request ran into (two writers raced on a unique name, a protected
        # row): a conflict with the current state, not an outage.
        logger.warning("integrity error: %s", exc)
        return Response(
            error_body("conflict", "The request conflicts with the current state of the data. "
                       "Reload and try again."),
            status=status.HTTP_409_CONFLICT,
        )
    elif isinstance(exc, DatabaseError):
        logger.exception("database error")
        return Response(
            error_body("service_unavailable", "The database is unavailable. Try again later."),
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
        )
    elif isinstance(exc, UNAVAILABLE):
        logger.exception("a dependency is unavailable")
        return Response(
            error_body("service_unavailable", "A service Junction depends on (the broker or the "
                       "cache) is unavailable. Try again later."),
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
        )
    elif isinstance(exc, RecursionError):
        # Bodies are depth-limited by the parser; whatever still recursed this deep came from
        # the request (a value nested past what the code can walk).
        logger.warning("recursion limit reached on %s", context.get("request") and context["request"].path)
        return Response(
            error_body("too_deeply_nested", "A value of this request is nested too deeply."),
            status=status.HTTP_400_BAD_REQUEST,
        )
    elif isinstance(exc, OverflowError):
        # A number too large for what it feeds (a date, a duration, a database integer).
        logger.warning("overflow on %s: %s", context.get("request") and context["request"].path, exc)
        return Response(
            error_body("value_out_of_range", f"A number of this request is out of range: {exc}"),
            status=status.HTTP_400_BAD_REQUEST,
        )

    response = exception_handler(exc, context)
    if response is None:
        return None  # an unexpected exception: Django's handler500 answers
    if isinstance(exc, exceptions.ValidationError):
        details = flatten_details(exc.detail)
        body = error_body("validation_error", summary(details), details)
    elif isinstance(exc, InvalidToken):
        body = error_body("token_not_valid", "The token is invalid or expired.")
    elif isinstance(exc, exceptions.APIException):
        detail = exc.detail
        code: Any = exc.get_codes()
        if isinstance(detail, dict):
            message = str(detail.get("detail", exc.default_detail))
            code = code.get("detail", exc.default_code) if isinstance(code, dict) else code
        else:
            message = str(detail)
        body = error_body(code if isinstance(code, str) else str(exc.default_code), message)
    else:  # DRF answers only its own exceptions (Http404 and PermissionDenied became those above)
        body = error_body("error", str(exc))
    response.data = body
    return response


def handler404(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if not request.path.startswith("/api/"):
        return page_not_found(request, exception)
    return JsonResponse(
        error_body("not_found", f"No route matches {request.path}."), status=404
    )


def handler500(request: HttpRequest) -> HttpResponse:
    if not request.path.startswith("/api/"):
        return server_error(request)
    return JsonResponse(
        error_body("server_error", "An unexpected error occurred. It has been logged."),
        status=500,
    )
