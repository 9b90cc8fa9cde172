"""Django's PostgreSQL backend, with a connection health check that costs no round trip.

With CONN_HEALTH_CHECKS Django sends `SELECT 1` before the first query of every request that
reuses a persistent connection: one more network round trip on every API call, just to learn
that the connection is fine, which it almost always is. An idle connection has nothing to
read; when the server went away (a restart, a terminated backend, an idle timeout) its socket
has: the server's goodbye or the end of the stream. So the check first asks the kernel,
without a round trip, whether the idle socket is readable, and only then pays for Django's
`SELECT 1` to decide. A caller never gets a 503 for a connection that died while idle, and a
healthy connection costs nothing. (A peer that vanished without closing, e.g. a cut cable,
is not seen here — nor would `SELECT 1` see it without waiting for a network timeout.)
"""
from __future__ import annotations

import select

from django.db.backends.postgresql.base import DatabaseWrapper as PostgresDatabaseWrapper


class DatabaseWrapper(PostgresDatabaseWrapper):
    def is_usable(self) -> bool:
        if self.connection is None or self.connection.closed:
            return False
        try:
            readable, _, _ = select.select([self.connection.fileno()], [], [], 0)
        except (OSError, ValueError):
            return False
        if not readable:  # nothing pending on an idle connection: the server is still there
            return True
        return super().is_usable()
