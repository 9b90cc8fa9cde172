"""Every exception on a request path maps to the error shape with the right status (config/api_errors.py)."""
from __future__ import annotations

import pytest
from django.db import DatabaseError, IntegrityError
from django.db.models import ProtectedError
from kombu.exceptions import OperationalError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from accounts.models import User
from config.api_errors import api_exception_handler
from config.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    Unavailable,
    Unprocessable,
)

CASES = [
    (IntegrityError("duplicate key"), 409, "conflict"),
    (ProtectedError("protected", set()), 409, "conflict"),
    (DatabaseError("server closed the connection"), 503, "service_unavailable"),
    (OperationalError("Error 111 connecting to 127.0.0.1:6379"), 503, "service_unavailable"),
    (RedisConnectionError("Connection refused"), 503, "service_unavailable"),
    (RedisTimeoutError("Timeout reading"), 503, "service_unavailable"),
    (ConnectionRefusedError("refused"), 503, "service_unavailable"),
    (RecursionError("maximum recursion depth exceeded"), 400, "too_deeply_nested"),
    (OverflowError("date value out of range"), 400, "value_out_of_range"),
    (User.DoesNotExist("gone"), 404, "not_found"),
]


@pytest.mark.parametrize("exc,status,code", CASES, ids=[type(c[0]).__name__ for c in CASES])
def test_exception_maps_to_status_and_code(rf, exc, status, code):
    response = api_exception_handler(exc, {"request": rf.get("/api/x/"), "view": None})
    assert response is not None
    assert (response.status_code, response.data["code"]) == (status, code)
    assert set(response.data) == {"code", "message", "details"}
    assert "127.0.0.1" not in response.data["message"]  # no infrastructure detail leaks


def test_an_unexpected_exception_is_left_to_handler500(rf):
    assert api_exception_handler(KeyError("bug"), {"request": rf.get("/api/x/"), "view": None}) is None


# --- the application errors (config/errors.py): one status per kind, mapped here only -------

DOMAIN_CASES = [
    (InvalidInput(details={"tasks.a.body.url": ["Must be a string."]}), 400, "validation_error"),
    (Forbidden("Registration is turned off.", code="registration_closed"), 403, "registration_closed"),
    (NotFound("No such task type."), 404, "not_found"),
    (Conflict("The session has already finished.", code="session_finished"), 409, "session_finished"),
    (PayloadTooLarge("Too large."), 413, "request_too_large"),
    (Unprocessable("Key reused.", code="idempotency_conflict"), 422, "idempotency_conflict"),
    (RateLimited("Slow down.", retry_after=2.2), 429, "throttled"),
    (Unavailable(), 503, "service_unavailable"),
]


@pytest.mark.parametrize("exc,status,code", DOMAIN_CASES, ids=[type(c[0]).__name__ for c in DOMAIN_CASES])
def test_an_application_error_maps_to_its_status(rf, exc, status, code):
    response = api_exception_handler(exc, {"request": rf.get("/api/x/"), "view": None})
    assert response is not None
    assert (response.status_code, response.data) == (status, {"code": code, "message": exc.message,
                                                              "details": exc.details})


def test_a_subclass_keeps_its_kinds_status_and_its_own_code(rf):
    class SessionFinished(Conflict):
        code = "session_finished"

    response = api_exception_handler(SessionFinished(), {"request": rf.get("/api/x/"), "view": None})
    assert (response.status_code, response.data["code"]) == (409, "session_finished")


def test_rate_limited_says_when_to_come_back(rf):
    response = api_exception_handler(RateLimited(retry_after=2.2), {"request": rf.get("/api/x/"), "view": None})
    assert response["Retry-After"] == "3"


def test_invalid_input_without_a_message_names_its_first_field():
    error = InvalidInput(details={"a.b": ["Bad."], "c": ["Worse."]})
    assert error.message == "Invalid input. a.b: Bad. (and 1 more)"
    assert str(error) == error.message
