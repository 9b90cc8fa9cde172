"""Throttles beyond the run quota: failed logins, registrations, and per-user fair use.

Each is a fixed-window counter in the cache, like the run quota (`accounts.throttling`), one
round trip per counted request on Redis. Rates are settings (`JUNCTION_THROTTLE_*`, "N/period"
or "none"). Past a limit the answer is 429 `throttled` with `Retry-After`.

- Failed logins, per username and per client address (`JUNCTION_THROTTLE_LOGIN`): only failures
  count; once either counter is full, every login for that username or from that address is
  refused until the window ends, even with the right password (otherwise the limit would not
  slow guessing). These fail closed: when the cache is down, logins answer 503.
- Registrations per client address (`JUNCTION_THROTTLE_REGISTER`): every attempt counts (also
  those refused for a taken name: they enumerate users). Fails closed too.
- End users of an app (docs/end-users.md) have the same two throttles with the same rates, in
  windows of their own per app (`realm`).
- Anonymous calls of public interactions, per client address (`JUNCTION_THROTTLE_PUBLIC_RUN`);
  fails open like the run quota.
- Per user, on routes that start work or hold a connection: trying a task type
  (`JUNCTION_THROTTLE_TASK_TEST`), retrying a session (`JUNCTION_THROTTLE_RETRY`) and opening an
  event stream (`JUNCTION_THROTTLE_EVENTS`). Fair use, so they fail open (with a warning) as the
  run quota does.

The client address is DRF's: `REMOTE_ADDR`, or the address `JUNCTION_NUM_PROXIES` trusted proxies
put into `X-Forwarded-For` (never a client-chosen value when it is 0, the default).
"""
from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache import cache
from rest_framework.exceptions import Throttled
from rest_framework.throttling import BaseThrottle

from accounts.throttling import _count, parse_rate  # one counter implementation for every limit
from config.rediscache import redis_client

logger = logging.getLogger(__name__)
KEY_PREFIX = "throttle"


@dataclass(frozen=True)
class Window:
    key: str
    limit: int
    period: int
    ends: float

    @property
    def wait(self) -> float:
        return max(self.ends - time.time(), 1.0)


def _window(scope: str, ident: str, rate: str) -> Window | None:
    parsed = parse_rate(rate)
    if parsed is None:
        return None
    limit, period = parsed
    now = time.time()
    number = int(now // period)
    return Window(f"{KEY_PREFIX}:{scope}:{ident}:{period}:{number}", limit, period, (number + 1) * period)


def _used(window: Window) -> int:
    client = redis_client()
    if client is not None:
        value = client.get(cache.make_and_validate_key(window.key))
        return int(value or 0)
    return int(cache.get(window.key) or 0)


def client_address(request) -> str:
    return BaseThrottle().get_ident(request) or "unknown"


def _refuse(window: Window, what: str) -> Throttled:
    return Throttled(wait=window.wait, detail=f"Too many {what}: try again in {int(window.wait) + 1} s.")


def _login_windows(request, username: str, realm: str = "") -> list[Window]:
    rate = settings.JUNCTION_THROTTLE_LOGIN
    # Hashed: a username is whatever the caller typed (spaces, control characters, any length).
    name = hashlib.sha256(username.strip().lower().encode()).hexdigest()
    found = [_window(f"{realm}login-user", name, rate),
             _window(f"{realm}login-address", client_address(request), rate)]
    return [window for window in found if window is not None]


def login_check(request, username: str, *, realm: str = "") -> None:
    """Raise Throttled when failed logins for this username or address have used up the window.

    `realm` keeps separate windows for other kinds of accounts: an app's end users use
    `app:<id>:`, so their failures neither lock builders out nor another app's users.
    """
    for window in _login_windows(request, username, realm):
        if _used(window) >= window.limit:
            raise _refuse(window, "failed logins")


def login_failed(request, username: str, *, realm: str = "") -> None:
    """Count one failed login for the username and for the address."""
    for window in _login_windows(request, username, realm):
        _count(window.key, window.period)


def registration_check(request, *, realm: str = "") -> None:
    """Count one registration attempt from this address; raise Throttled past the limit."""
    window = _window(f"{realm}register", client_address(request), settings.JUNCTION_THROTTLE_REGISTER)
    if window is not None and _count(window.key, window.period) > window.limit:
        raise _refuse(window, "registrations from this address")


def public_run_check(request) -> None:
    """Count one anonymous run of a public interaction from this address (JUNCTION_THROTTLE_PUBLIC_RUN).

    Raises Throttled past the limit. Fails open when the cache is down, as the run quota does:
    the interaction's owner's active-session limit still bounds what anonymous callers start.
    """
    window = _window("public-run", client_address(request), settings.JUNCTION_THROTTLE_PUBLIC_RUN)
    if window is None:
        return
    try:
        used = _count(window.key, window.period)
    except Exception:
        logger.warning("public run rate not checked: the cache is unavailable", exc_info=True)
        return
    if used > window.limit:
        raise _refuse(window, "calls of public interactions from this address")


def clear() -> int:
    """Forget every throttle window (for an operator unlocking users, and tests); return how many.

    Only keys of this module are removed, never the rest of the cache.
    """
    client = redis_client()
    if client is None:  # process memory (the embedded mode)
        local: dict[str, Any] = getattr(cache, "_cache", {})
        keys = [key for key in list(local) if f":{KEY_PREFIX}:" in key]
        for key in keys:
            local.pop(key, None)
        return len(keys)
    keys = list(client.scan_iter(match=cache.make_and_validate_key(f"{KEY_PREFIX}:*"), count=1000))
    if keys:
        client.delete(*keys)
    return len(keys)


class UserRateThrottle(BaseThrottle):
    """A per-user fixed window whose rate is the setting named by `setting`; fails open."""

    setting: str = ""
    scope: str = ""

    def __init__(self) -> None:
        self._wait = 0.0

    def allow_request(self, request, view) -> bool:
        user = request.user
        if not user or not user.is_authenticated:
            return True
        window = _window(self.scope, str(user.pk), getattr(settings, self.setting))
        if window is None:
            return True
        try:
            used = _count(window.key, window.period)
        except Exception:  # the cache (Redis) is down: fair use fails open, like the run quota
            logger.warning("%s not checked for user %s: the cache is unavailable", self.setting, user.pk,
                           exc_info=True)
            return True
        if used <= window.limit:
            return True
        self._wait = window.wait
        return False

    def wait(self) -> float:
        return self._wait


class TaskTestThrottle(UserRateThrottle):
    setting, scope = "JUNCTION_THROTTLE_TASK_TEST", "task-test"


class RetryThrottle(UserRateThrottle):
    setting, scope = "JUNCTION_THROTTLE_RETRY", "retry"


class EventsThrottle(UserRateThrottle):
    setting, scope = "JUNCTION_THROTTLE_EVENTS", "events"
