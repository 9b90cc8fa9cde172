"""The one error shape of the API: `{"code": ..., "message": ..., "details": {...}}`.

Every 4xx/5xx that the API returns goes through here: DRF exceptions through
`api_exception_handler`, Django's own 404/500 (unknown URLs, crashes) through `handler404` /
`handler500` in `config.urls`. Validation errors put each offending field, as a dotted path
(`tasks.fetch.body.url`), into `details`, mapped to its messages.
"""
from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import ObjectDoesNotExist, PermissionDenied
from django.db import DatabaseError, DataError, IntegrityError
from kombu.exceptions import OperationalError as BrokerError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from django.http import Http404, JsonResponse
from django.views.defaults import page_not_found, server_error
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler
from rest_framework_simplejwt.exceptions import InvalidToken

logger = logging.getLogger(__name__)


class ApiError(exceptions.APIException):
    """An error with an explicit code, message and details, raised by services."""

    status_code = status.HTTP_400_BAD_REQUEST
    default_code = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        details: dict[str, Any] | None = None,
        status_code: int | None = None,
    ) -> None:
        super().__init__(detail=message, code=code or self.default_code)
        self.code = code or self.default_code
        self.details = details or {}
        if status_code is not None:
            self.status_code = status_code


# Errors of the broker and the cache (Redis) on a request path: the dependency is down (503).
UNAVAILABLE: tuple[type[BaseException], ...] = (
    BrokerError, RedisConnectionError, RedisTimeoutError, ConnectionError,
)


class Conflict(ApiError):
    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"code": code, "message": message, "details": details or {}}


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


def _validation_message(details: dict[str, list[str]]) -> str:
    first_field, messages = next(iter(details.items()), ("", [""]))
    more = len(details) - 1
    text = f"{first_field}: {messages[0]}" if first_field != "non_field_errors" else messages[0]
    return f"Invalid input. {text}" + (f" (and {more} more)" if more > 0 else "")


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Render any exception raised in a DRF view in the one error shape."""
    if isinstance(exc, ApiError):
        return Response(
            error_body(exc.code, str(exc.detail), exc.details), status=exc.status_code
        )
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
        body = error_body("validation_error", _validation_message(details), details)
    elif isinstance(exc, InvalidToken):
        body = error_body("token_not_valid", "The token is invalid or expired.")
    else:
        detail = exc.detail if isinstance(exc, exceptions.APIException) else str(exc)
        code = exc.get_codes() if isinstance(exc, exceptions.APIException) else "error"
        if isinstance(detail, dict):
            message = str(detail.get("detail", exc.default_detail))
            code = code.get("detail", exc.default_code) if isinstance(code, dict) else code
        else:
            message = str(detail)
        body = error_body(code if isinstance(code, str) else exc.default_code, message)
    response.data = body
    return response


def handler404(request, exception=None):
    if not request.path.startswith("/api/"):
        return page_not_found(request, exception)
    return JsonResponse(
        error_body("not_found", f"No route matches {request.path}."), status=404
    )


def handler500(request):
    if not request.path.startswith("/api/"):
        return server_error(request)
    return JsonResponse(
        error_body("server_error", "An unexpected error occurred. It has been logged."),
        status=500,
    )
