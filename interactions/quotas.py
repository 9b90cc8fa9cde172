"""Per-user concurrency: at most JUNCTION_MAX_ACTIVE_SESSIONS queued or running sessions per user.

Checked as a session is created (a run, a retry): past it the call is 429
`too_many_active_sessions` with `Retry-After`, and nothing is written. The count is bounded
(`LIMIT N` in a subquery on the sessions of the user that are active) and travels in the same
round trip as the session's inserts (interactions/runstore.py `insert_session`), so it costs no
round trip of its own whatever the backlog.

The check is not a lock: requests of one user that start sessions at the same instant may each
see room and together go past the limit by at most the number of such requests in flight.
Serialising a user's runs on a row lock would cost every run a round trip and make one user's
calls wait on each other; the limit is about fair use of workers, which a few extra sessions do
not upset (docs/security.md).
"""
from __future__ import annotations

from django.conf import settings

from config.errors import RateLimited

# What a refused caller is told to wait: sessions end at their own pace, so this is a hint.
RETRY_AFTER_SECONDS = 5


class TooManyActiveSessions(RateLimited):
    code = "too_many_active_sessions"


def active_limit() -> int:
    return settings.JUNCTION_MAX_ACTIVE_SESSIONS


def too_many_active_sessions() -> TooManyActiveSessions:
    """The 429 for a user who already has `active_limit()` sessions queued or running."""
    return TooManyActiveSessions(
        f"You have {active_limit()} sessions queued or running, the most allowed "
        f"(JUNCTION_MAX_ACTIVE_SESSIONS): wait for some to finish.",
        retry_after=RETRY_AFTER_SECONDS,
    )
