"""Admin test helpers: logged-in clients for a superuser and for builders, and query counting.

The fixtures are a plugin of tests/conftest.py: every test module can ask for them.
"""
from __future__ import annotations

from collections.abc import Callable

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from accounts.admin_scoping import builder_admin_grant
from accounts.models import User


def logged_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def superuser_client(db) -> Client:
    return logged_in(User.objects.create_superuser(username="root", email="root@example.com", password="x"))


def make_builder(username: str | None = None) -> User:
    """A user let into the admin as a builder, as `manage.py grant_admin` does."""
    from tests.conftest import make_user  # conftest loads this module as a plugin

    user = make_user(username)
    builder_admin_grant(user=user)
    return User.objects.get(pk=user.pk)  # fresh: no cached permissions


@pytest.fixture
def builder(db) -> User:
    return make_builder("builder")


@pytest.fixture
def builder_client(builder) -> Client:
    return logged_in(builder)


def query_count(fetch: Callable[[], object]) -> int:
    with CaptureQueriesContext(connection) as queries:
        fetch()
    return len(queries)
