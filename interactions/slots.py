"""Per-user slots for slow task types: at most JUNCTION_MAX_SLOW_TASKS_PER_USER at once.

A slow task type (`TaskType.slow`: it holds a worker process for up to its timeout doing I/O —
`http_request`, `send_email`, `send_tweet`, `code`) takes one of its user's slots before it is
claimed, and gives it back when its step ends. A task that finds every slot taken is not
claimed: its message comes back after a short countdown (`executor.RetryLater`), so one user's
long tasks can occupy at most that many worker processes, whatever their backlog. Trying a slow
type (`POST /api/task-types/{type}/test/`) takes a slot too, or is refused with 429.

Crash safety: a slot is a member of a Redis sorted set per user, scored with the moment its
lease ends (Redis' own clock, so workers' clocks do not matter). The lease is the task's
(timeout + JUNCTION_HARD_TIMEOUT_GRACE + JUNCTION_LEASE_GRACE: the same bound after which the
claim itself may be taken over). Taking a slot first drops the members whose lease has passed,
so the slot of a worker that died (SIGKILL, OOM, a lost host) is free again at the latest when
its lease ends — never leaked — and the key itself expires with its last lease. Each delivery
holds its own member, so a redelivered message never frees the slot of a delivery still
running.

Only slow types pay, and only for one round trip: taking a slot is a Lua script, sent by its
SHA (EVALSHA, sent again whole when the server has lost it), on the calling thread's own
connection (`redis_sender.call`: none of redis-py's per-call layers). Giving it back does not
wait: the ZREM goes out through this process's Redis sender thread (`interactions.redis_sender`),
usually in the same pipeline as the step's task events. Until that thread has sent it, this
process's own `take` and `held` remove the slot themselves, in their round trip: so a slot
released here is free for this process's next step at once, and for other processes a fraction
of a millisecond later, as if the step had ended that much later. A release that never leaves
(the process killed first) is a slot never given back: its lease frees it, as above. When
Redis cannot be reached the limit fails open with a warning, as the run quota does: it is fair
use, and refusing every slow task through a cache outage would turn it into a full outage. In
the embedded mode (no Redis, one process) the same rules hold in process memory.
"""
from __future__ import annotations

import hashlib
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.cache import cache

from redis.exceptions import NoScriptError, ResponseError

from config.errors import UNAVAILABLE
from config.rediscache import redis_client
from interactions import redis_sender

logger = logging.getLogger(__name__)
KEY_PREFIX = "slow-slots"

# KEYS[1]: the user's set; ARGV: limit, lease seconds, member, then members this process gave
# back that its sender thread may not have sent yet. Returns 1 when the slot is taken.
_TAKE = """
if #ARGV > 3 then
  redis.call('ZREM', KEYS[1], unpack(ARGV, 4))
end
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1000000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', t)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('ZADD', KEYS[1], t + tonumber(ARGV[2]), ARGV[3])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('EXPIREAT', KEYS[1], math.ceil(tonumber(last[2])) + 1)
return 1
"""

# KEYS[1]: the user's set; ARGV: members given back, not yet sent. Returns the slots held now.
_HELD = """
if #ARGV > 0 then
  redis.call('ZREM', KEYS[1], unpack(ARGV))
end
local now = redis.call('TIME')
return redis.call('ZCOUNT', KEYS[1], '(' .. (tonumber(now[1]) + tonumber(now[2]) / 1000000), '+inf')
"""


@dataclass
class Slot:
    """A slot held by one delivery; `release()` gives it back (idempotent)."""

    key: str
    member: str
    released: bool = field(default=False)

    def release(self) -> None:
        if self.released:
            return
        self.released = True
        client = redis_client()
        if client is None:
            _local.release(self.key, self.member)
            return
        key, member = self.key, self.member
        _unsent.add(key, member)

        def sent(ok: bool) -> None:
            _unsent.discard(key, [member])
            if not ok:  # not given back: it frees itself when its lease ends
                logger.warning("slow-task slot %s not released: the cache is unavailable", member)

        def build(commands: list[tuple[Any, ...]]) -> None:
            if _unsent.holds(key, member):  # else a `take` or `held` of this process removed it
                commands.append(("ZREM", key, member))

        redis_sender.send(client, build, sent)


class _Unsent:
    """Slots this process gave back whose ZREM its sender thread has not sent yet, per key."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._members: dict[str, set[str]] = {}

    def add(self, key: str, member: str) -> None:
        with self._lock:
            self._members.setdefault(key, set()).add(member)

    def holds(self, key: str, member: str) -> bool:
        with self._lock:
            return member in self._members.get(key, ())

    def of(self, key: str) -> list[str]:
        with self._lock:
            return list(self._members.get(key, ()))

    def discard(self, key: str, members: list[str]) -> None:
        with self._lock:
            found = self._members.get(key)
            if found is not None:
                found.difference_update(members)
                if not found:
                    del self._members[key]


# Not reset in a forked child: what the parent had not sent is the parent's to send, and a
# ZREM of a member that is gone is harmless.
_unsent = _Unsent()


class _LocalSlots:
    """The embedded mode's slots (one process, no Redis): the same rules, with time.monotonic()."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sets: dict[str, dict[str, float]] = {}

    def take(self, key: str, limit: int, lease: float, member: str) -> bool:
        now = time.monotonic()
        with self._lock:
            members = {m: until for m, until in self._sets.get(key, {}).items() if until > now}
            if len(members) >= limit:
                self._sets[key] = members
                return False
            members[member] = now + lease
            self._sets[key] = members
            return True

    def release(self, key: str, member: str) -> None:
        with self._lock:
            self._sets.get(key, {}).pop(member, None)

    def held(self, key: str) -> int:
        now = time.monotonic()
        with self._lock:
            return sum(1 for until in self._sets.get(key, {}).values() if until > now)


_local = _LocalSlots()


def _key(user_id: Any) -> str:
    return cache.make_and_validate_key(f"{KEY_PREFIX}:{user_id}")


def take(*, user_id: Any, lease_seconds: float, label: str = "") -> Slot | None:
    """Take one of the user's slow-task slots for at most `lease_seconds`.

    Returns the slot, or None when every slot of the user is held. Fails open (returns a slot
    that holds nothing) when Redis is unavailable.
    """
    key, limit = _key(user_id), settings.JUNCTION_MAX_SLOW_TASKS_PER_USER
    member = f"{label}:{uuid.uuid4().hex}" if label else uuid.uuid4().hex
    client = redis_client()
    if client is None:
        return Slot(key, member) if _local.take(key, limit, lease_seconds, member) else None
    given_back = _unsent.of(key)
    try:
        taken = _run_script(client, _TAKE, key, [limit, lease_seconds, member, *given_back])
    except UNAVAILABLE:
        logger.warning("JUNCTION_MAX_SLOW_TASKS_PER_USER not checked for user %s: the cache is unavailable",
                       user_id, exc_info=True)
        return Slot(key, member)
    if given_back:
        _unsent.discard(key, given_back)  # gone now; the sender's own ZREM will find nothing
    return Slot(key, member) if taken else None


def held(*, user_id: Any) -> int:
    """How many of the user's slots are held now (leases not yet ended)."""
    key = _key(user_id)
    client = redis_client()
    if client is None:
        return _local.held(key)
    given_back = _unsent.of(key)
    count = int(_run_script(client, _HELD, key, given_back))
    if given_back:
        _unsent.discard(key, given_back)
    return count


_SHA = {text: hashlib.sha1(text.encode()).hexdigest() for text in (_TAKE, _HELD)}


def _run_script(client: Any, text: str, key: str, args: list[Any]) -> Any:
    """EVALSHA `text` with one key, loading it (EVAL) when the server does not know it yet.

    One round trip on the calling thread's own connection (`redis_sender.call`): this runs
    for every slow task's step.
    """
    (reply,) = redis_sender.call(client, [("EVALSHA", _SHA[text], 1, key, *args)])
    if isinstance(reply, NoScriptError):
        (reply,) = redis_sender.call(client, [("EVAL", text, 1, key, *args)])
    if isinstance(reply, ResponseError):
        raise reply
    return reply
