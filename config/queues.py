"""The Celery queues, named once (settings, task types, dispatch and the embedded worker read them).

`default` takes every task but custom code; `code` takes `code` tasks (and their trials), so that
they can run on dedicated workers (docs/sandbox.md).
"""
from __future__ import annotations

import enum


class Queue(enum.StrEnum):
    DEFAULT = "default"
    CODE = "code"
