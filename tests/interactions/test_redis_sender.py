"""The per-process Redis sender thread (interactions/redis_sender.py), against the real Redis."""
from __future__ import annotations

import threading
import uuid

import pytest
import redis
from django.conf import settings

from interactions import redis_sender


@pytest.fixture
def client():
    client = redis.Redis.from_url(settings.JUNCTION_EVENTS_URL)
    keys: list[str] = []
    yield client, keys
    if keys:
        client.delete(*keys)


def key(keys: list[str]) -> str:
    name = f"test-sender:{uuid.uuid4().hex}"
    keys.append(name)
    return name


class Done:
    """Records what `done` was called with."""

    def __init__(self) -> None:
        self.calls: list[bool] = []

    def __call__(self, ok: bool) -> None:
        self.calls.append(ok)


def test_flush_returns_once_what_was_queued_has_been_sent(client):
    redis_client, keys = client
    first, second, done = key(keys), key(keys), Done()
    redis_sender.send(redis_client, lambda commands: commands.append(("SET", first, "1")), done)
    redis_sender.send(redis_client, lambda commands: commands.append(("SET", second, "2")), done)
    assert redis_sender.flush()
    assert redis_client.mget(first, second) == [b"1", b"2"]
    assert done.calls == [True, True]


def test_commands_of_two_clients_of_one_server_keep_their_order(client):
    redis_client, keys = client
    other = redis.Redis.from_url(settings.JUNCTION_EVENTS_URL)  # another pool, the same server
    target = key(keys)
    for i in range(20):
        sender = redis_client if i % 2 else other
        redis_sender.send(sender, lambda commands, i=i: commands.append(("RPUSH", target, str(i))))
    assert redis_sender.flush()
    assert redis_client.lrange(target, 0, -1) == [str(i).encode() for i in range(20)]


def test_an_error_reply_loses_only_its_own_command(client):
    redis_client, keys = client
    text, after, done = key(keys), key(keys), Done()
    redis_client.set(text, "not a number")
    redis_sender.send(redis_client, lambda commands: commands.extend([("INCR", text), ("SET", after, "x")]), done)
    assert redis_sender.flush()
    assert redis_client.get(after) == b"x"
    assert done.calls == [True]


def test_a_build_that_raises_loses_only_its_own_commands(client):
    redis_client, keys = client
    after = key(keys)

    def broken(commands):
        raise ValueError("cannot encode")

    redis_sender.send(redis_client, broken)
    redis_sender.send(redis_client, lambda commands: commands.append(("SET", after, "x")))
    assert redis_sender.flush()
    assert redis_client.get(after) == b"x"


def test_an_unreachable_server_is_reported_to_done_and_the_thread_goes_on(client):
    redis_client, keys = client
    nobody = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=1)  # nothing listens there
    after, lost, done = key(keys), Done(), Done()
    redis_sender.send(nobody, lambda commands: commands.append(("SET", "never", "x")), lost)
    redis_sender.send(redis_client, lambda commands: commands.append(("SET", after, "x")), done)
    assert redis_sender.flush(timeout=10)
    assert lost.calls == [False]
    assert done.calls == [True] and redis_client.get(after) == b"x"


def test_a_build_runs_on_the_senders_thread_not_the_callers(client):
    redis_client, keys = client
    seen: list[str] = []
    redis_sender.send(redis_client, lambda commands: seen.append(threading.current_thread().name))
    assert redis_sender.flush()
    assert seen == ["junction-redis-sender"]
