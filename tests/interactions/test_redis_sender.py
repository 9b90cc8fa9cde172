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


# --- call: the commands a step waits for -------------------------------------------------------


def test_call_returns_the_replies_of_its_commands_in_order(client):
    redis_client, keys = client
    name = key(keys)
    replies = redis_sender.call(redis_client, [("SET", name, "1"), ("INCRBY", name, 41), ("GET", name)])
    assert replies[1:] == [42, b"42"]
    assert redis_client.get(name) == b"42"


def test_a_refused_command_comes_back_in_its_place_and_the_connection_goes_on(client):
    redis_client, keys = client
    name = key(keys)
    redis_client.set(name, "text")
    refused, after = redis_sender.call(redis_client, [("INCR", name), ("GET", name)])
    assert isinstance(refused, redis.exceptions.ResponseError) and after == b"text"
    assert redis_sender.call(redis_client, [("EXISTS", name)]) == [1]


def test_an_unreachable_server_raises_and_the_next_call_connects_again(client):
    redis_client, keys = client
    nobody = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=1)
    with pytest.raises(redis.exceptions.ConnectionError):
        redis_sender.call(nobody, [("PING",)])
    name = key(keys)
    redis_client.set(name, "x")
    # A connection dropped by the server (as on a Redis restart) is replaced by the next call.
    redis_sender.call(redis_client, [("CLIENT", "SETNAME", f"call-{name}")])
    killed = [c for c in redis_client.client_list() if c.get("name") == f"call-{name}"]
    assert len(killed) == 1
    redis_client.client_kill_filter(_id=killed[0]["id"])
    with pytest.raises(redis.exceptions.ConnectionError):
        redis_sender.call(redis_client, [("GET", name)])
    assert redis_sender.call(redis_client, [("GET", name)]) == [b"x"]


def test_each_thread_calls_on_a_connection_of_its_own(client):
    redis_client, keys = client
    names: list = []

    def who_am_i() -> None:
        names.append(redis_sender.call(redis_client, [("CLIENT", "ID")])[0])

    threads = [threading.Thread(target=who_am_i) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    who_am_i()
    assert len(set(names)) == 4
