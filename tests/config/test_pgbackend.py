"""config/pgbackend: the connection health check costs no round trip, yet sees a dead connection."""
from __future__ import annotations

import time

import pytest
from django.db import connection, connections


@pytest.fixture
def spare():
    """A second connection of its own (the test's own one stays inside its transaction)."""
    wrapper = connections.create_connection("default")
    wrapper.ensure_connection()
    yield wrapper
    wrapper.close()


def _backend_pid(wrapper) -> int:
    with wrapper.connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def _statements_of(pid: int) -> str:
    """The last statement the server saw from backend `pid`."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT query FROM pg_stat_activity WHERE pid = %s", [pid])
        return cursor.fetchone()[0]


@pytest.mark.django_db
class TestHealthCheck:
    def test_the_backend_is_ours(self):
        assert connection.settings_dict["ENGINE"] == "config.pgbackend"
        assert connection.settings_dict["CONN_HEALTH_CHECKS"] is True

    def test_a_healthy_connection_is_usable_without_a_query(self, spare):
        pid = _backend_pid(spare)
        last = _statements_of(pid)
        assert spare.is_usable()
        assert _statements_of(pid) == last  # no `SELECT 1` reached the server

    def test_a_terminated_connection_is_unusable_and_replaced(self, spare):
        pid = _backend_pid(spare)
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
        for _ in range(100):  # the server's goodbye reaches the socket
            if not spare.is_usable():
                break
            time.sleep(0.05)
        assert not spare.is_usable()
        spare.health_check_done = False
        spare.close_if_health_check_failed()
        assert spare.connection is None
        spare.ensure_connection()
        assert _backend_pid(spare) != pid
