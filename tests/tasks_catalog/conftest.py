"""Fixtures of the task-type tests: a local HTTP server."""
from __future__ import annotations

import pytest

from tests.http_server import LocalHttpServer


@pytest.fixture
def local_http():
    """An HTTP server on 127.0.0.1 (a free port) recording every request it sees."""
    server = LocalHttpServer().start()
    yield server
    server.stop()
