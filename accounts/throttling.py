"""Per-user rate limits by plan (JUNCTION_RATE_PLANS): a fixed-window counter in the cache.

DRF's own throttles keep every request's timestamp per user, which costs O(rate) per request
at the tens of thousands a minute Junction is built for; a counter per window costs one
increment. The price is the usual fixed-window burst at a window's edge (up to twice the rate
over a short span), which is acceptable for a quota.

When the cache is unreachable the quota fails open: the run is accepted (a warning is logged).
A run quota is about fair use, not security, and a run's acceptance is durable without Redis:
the session is written to PostgreSQL, and the sweeper sends it to the workers once the broker
is back (docs/limits.md, "When Redis is down"). Throttles that protect credentials (failed
logins) must fail closed instead.
"""
from __future__ import annotations

import logging
import time

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured
from rest_framework.exceptions import Throttled
from rest_framework.throttling import BaseThrottle

from accounts.models import EndUser
from config.rediscache import redis_client

logger = logging.getLogger(__name__)

PERIODS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600}


def parse_rate(rate: str) -> tuple[int, int] | None:
    """Parse "600/min" into (600, 60); "none" means no limit (None)."""
    if rate.strip().lower() == "none":
        return None
    try:
        count, period = rate.split("/")
        return int(count), PERIODS[period.strip().lower()]
    except (ValueError, KeyError):
        raise ImproperlyConfigured(f"bad rate {rate!r} in JUNCTION_RATE_PLANS (use e.g. 600/min)") from None


def _count(key: str, period: int) -> int:
    """Add one to the window's counter and return it (one round trip on Redis)."""
    client = redis_client()
    if client is not None:
        with client.pipeline(transaction=False) as pipe:
            pipe.incr(cache.make_and_validate_key(key))
            pipe.expire(cache.make_and_validate_key(key), period + 1)
            used, _ = pipe.execute()
        return int(used)
    cache.add(key, 0, timeout=period + 1)
    try:
        return cache.incr(key)
    except ValueError:  # the key expired between add and incr: a new window
        cache.add(key, 1, timeout=period + 1)
        return 1


class PlanRateThrottle(BaseThrottle):
    def __init__(self) -> None:
        self._wait = 0.0

    def allow_request(self, request, view) -> bool:
        user = request.user
        if not user or not user.is_authenticated:
            return True  # an anonymous call of a public interaction: the view checks its owner's plan
        if isinstance(user, EndUser):  # an end user's calls count against the app owner's plan
            user = user.app.owner
        return self.allow(user)

    def allow(self, user) -> bool:
        """Count one run against `user`'s plan; False when past it (`wait()` says how long)."""
        rate = settings.JUNCTION_RATE_PLANS.get(user.plan) or settings.JUNCTION_RATE_PLANS.get("default")
        limit = parse_rate(rate) if rate else None
        if limit is None:
            return True
        count, period = limit
        now = time.time()
        window = int(now // period)
        key = f"rate:{user.pk}:{period}:{window}"
        try:
            used = _count(key, period)
        except Exception:  # the cache (Redis) is down: see the module's docstring
            logger.warning("rate limit not checked for user %s: the cache is unavailable", user.pk, exc_info=True)
            return True
        if used <= count:
            return True
        self._wait = (window + 1) * period - now
        return False

    def wait(self) -> float:
        return max(self._wait, 0.0)


def plan_rate_check(user) -> None:
    """Count one run against `user`'s plan (for calls whose owner is known only in the view:
    anonymous calls of public interactions); raise Throttled past it."""
    throttle = PlanRateThrottle()
    if not throttle.allow(user):
        raise Throttled(wait=throttle.wait())
