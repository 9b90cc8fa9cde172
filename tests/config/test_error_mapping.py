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
