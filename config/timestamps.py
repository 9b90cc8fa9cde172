"""The API's one timestamp format: ISO 8601 in UTC, always with microseconds, ending in `Z`
(`2026-12-01T18:40:18.123456Z`), in every response body and Server-Sent Event (docs/api.md).

DRF's serializers use it through `REST_FRAMEWORK["DATETIME_FORMAT"]`; what is rendered by hand
(sessions and their events, `interactions.selectors`) goes through `iso_timestamp`.
"""
from __future__ import annotations

from datetime import UTC, datetime

FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def iso_timestamp(value: datetime | None) -> str | None:
    """Render an aware datetime in the API's format (None stays None)."""
    if value is None:
        return None
    return value.astimezone(UTC).strftime(FORMAT)
