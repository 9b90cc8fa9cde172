"""The statuses of sessions and of their task runs: defined once, for the models, the engine,
the executor and the API. Plain Python (no Django), so the pure engine can use them too.

The models take their choices from here (`choices`); values are what the API and the database
hold, so they never change.
"""
from __future__ import annotations

import enum


class SessionStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"


class TaskStatus(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"


def choices(statuses: type[enum.StrEnum]) -> list[tuple[str, str]]:
    """Django choices for a status enum (labels as `TextChoices` makes them: "Timed Out")."""
    return [(member.value, member.name.replace("_", " ").title()) for member in statuses]


SESSION_ACTIVE: tuple[SessionStatus, ...] = (SessionStatus.QUEUED, SessionStatus.RUNNING)
SESSION_TERMINAL: tuple[SessionStatus, ...] = (
    SessionStatus.COMPLETED, SessionStatus.FAILED, SessionStatus.CANCELLED, SessionStatus.TIMED_OUT,
)

# A task run's statuses, by the names the engine and the executor use.
PENDING, RUNNING = TaskStatus.PENDING, TaskStatus.RUNNING
COMPLETED, FAILED = TaskStatus.COMPLETED, TaskStatus.FAILED
SKIPPED, CANCELLED = TaskStatus.SKIPPED, TaskStatus.CANCELLED
TASK_UNFINISHED: tuple[TaskStatus, ...] = (PENDING, RUNNING)
TASK_TERMINAL: frozenset[TaskStatus] = frozenset({COMPLETED, FAILED, SKIPPED, CANCELLED})
# The statuses an `execute_after` edge may accept.
EDGE_STATUSES: tuple[TaskStatus, ...] = (COMPLETED, FAILED)
