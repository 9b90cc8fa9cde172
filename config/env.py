"""Read typed settings from the environment (and a `.env` file when present)."""
from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import overload

from django.core.exceptions import ImproperlyConfigured


@overload
def env_str(name: str, default: str) -> str: ...
@overload
def env_str(name: str, default: None = None) -> str | None: ...
def env_str(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return default if value is None or value == "" else value


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    if value.lower() in {"1", "true", "yes", "on"}:
        return True
    if value.lower() in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (true/false), got {value!r}")


def _bounded(name: str, value, minimum, maximum):
    """Refuse a limit outside [minimum, maximum]: every limit has a hard maximum (docs/limits.md)."""
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ImproperlyConfigured(f"{name} must be at most {maximum}, got {value}")
    return value


def env_int(name: str, default: int, *, minimum: int | None = None, maximum: int | None = None) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return _bounded(name, default, minimum, maximum)
    try:
        parsed = int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {value!r}") from None
    return _bounded(name, parsed, minimum, maximum)


def env_float(
    name: str, default: float, *, minimum: float | None = None, maximum: float | None = None
) -> float:
    value = os.environ.get(name)
    if value is None or value == "":
        return _bounded(name, default, minimum, maximum)
    try:
        parsed = float(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, got {value!r}") from None
    if parsed != parsed or parsed in (float("inf"), float("-inf")):
        raise ImproperlyConfigured(f"{name} must be a finite number, got {value!r}")
    return _bounded(name, parsed, minimum, maximum)


def env_list(name: str, default: list[str] | None = None) -> list[str]:
    value = os.environ.get(name)
    if value is None or value == "":
        return list(default or [])
    return [item.strip() for item in value.split(",") if item.strip()]


RATE_PERIODS = ("s", "sec", "second", "m", "min", "minute", "h", "hour")


def env_rate(name: str, default: str) -> str:
    """A rate "N/period" (period one of RATE_PERIODS) or "none" (no limit)."""
    value = (env_str(name, default) or default).strip()
    if value.lower() == "none":
        return value
    count, _, period = value.partition("/")
    if not count.strip().isdigit() or period.strip().lower() not in RATE_PERIODS:
        raise ImproperlyConfigured(f"{name} must be N/period (period: s, min or hour) or none, got {value!r}")
    return value


def local_secret(path: Path, make: Callable[[], str]) -> str:
    """Return the secret kept in `path`, creating it with `make()` on first use.

    Only the embedded mode uses this: a distributed deployment must pass its secrets in the
    environment, so that every process shares them.
    """
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = make()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value)
    return value


def token() -> str:
    return secrets.token_urlsafe(50)
