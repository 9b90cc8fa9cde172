"""Application errors: what went wrong, in words a caller can act on, and nothing of HTTP.

Services, selectors, the engine, task types and providers raise these; the API maps each class
to a status and the one error shape `{"code", "message", "details"}` in one place
(`config.api_errors.api_exception_handler`); the admin and management commands read the same
errors directly (`error.message`, `error.details`). This module imports no web framework:
`tests/test_import_layers.py` checks that no service reaches DRF.

Each error has a `code` (snake_case, stable: clients branch on it), a `message` (for people)
and `details` (field paths, as `tasks.<task>.body.<field>`, mapped to lists of messages).
Subclass one of the kinds below for a new code; add a kind only with its status in
`config.api_errors.STATUS_OF`.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from kombu.exceptions import OperationalError as BrokerError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

# Errors of the broker and the cache (Redis): the dependency is down. On a request path they
# become `Unavailable` (503) in the API's handler.
UNAVAILABLE: tuple[type[BaseException], ...] = (
    BrokerError, RedisConnectionError, RedisTimeoutError, ConnectionError,
)

Details = dict[str, list[str]]


class DomainError(Exception):
    """Base of the application errors: a code, a message and per-field details."""

    code: str = "error"
    default_message: str = "The request could not be completed."

    def __init__(
        self, message: str | None = None, *, code: str | None = None,
        details: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        self.details: Details = {str(key): [str(m) for m in messages] for key, messages in (details or {}).items()}
        self.message = message if message is not None else self.default_message
        if code is not None:
            self.code = code
        super().__init__(self.message)


class InvalidInput(DomainError):
    """The input cannot be used: `details` names each offending field (400)."""

    code = "validation_error"

    def __init__(
        self, message: str | None = None, *, code: str | None = None,
        details: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        super().__init__(message, code=code, details=details)
        if message is None:
            self.message = summary(self.details)
            self.args = (self.message,)


class Unauthenticated(DomainError):
    """The credentials are missing, wrong, expired or revoked (401)."""

    code = "authentication_failed"
    default_message = "Incorrect authentication credentials."


class Forbidden(DomainError):
    """The caller may not do this, whoever they are (403)."""

    code = "permission_denied"
    default_message = "You do not have permission to perform this action."


class NotFound(DomainError):
    """The object does not exist, or is not the caller's (404)."""

    code = "not_found"
    default_message = "Not found."


class Conflict(DomainError):
    """The request conflicts with the current state of the object (409)."""

    code = "conflict"
    default_message = "The request conflicts with the current state of the data."


class PayloadTooLarge(DomainError):
    """What was sent is larger than a limit (413)."""

    code = "request_too_large"
    default_message = "The request is too large."


class Unprocessable(DomainError):
    """Well-formed, but cannot be processed as sent: e.g. an Idempotency-Key reused with
    another body (422)."""

    code = "unprocessable"


class RateLimited(DomainError):
    """Past a fair-use limit; try again in `retry_after` seconds (429 with Retry-After)."""

    code = "throttled"
    default_message = "Request was throttled."

    def __init__(
        self, message: str | None = None, *, retry_after: float, code: str | None = None,
        details: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        super().__init__(message, code=code, details=details)
        self.retry_after = retry_after


class Unavailable(DomainError):
    """A dependency (the database, the broker, the cache) is down; try again later (503)."""

    code = "service_unavailable"
    default_message = "A service Junction depends on is unavailable. Try again later."


def summary(details: Mapping[str, Sequence[str]]) -> str:
    """The message of a validation error: its first problem, and how many more there are."""
    first_field, messages = next(iter(details.items()), ("", [""]))
    first = messages[0] if messages else ""
    more = len(details) - 1
    text = f"{first_field}: {first}" if first_field not in ("", "non_field_errors") else first
    return f"Invalid input. {text}".rstrip() + (f" (and {more} more)" if more > 0 else "")


def error_body(code: str, message: str, details: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The one error shape: `{"code": ..., "message": ..., "details": {...}}`."""
    return {"code": code, "message": message, "details": dict(details or {})}
