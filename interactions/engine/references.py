"""References inside task bodies: `{"$ref": "task.path"}` and `{"$template": "… {{ task.path }} …"}`.

A reference names a preceding task and a JMESPath path into its record: `task.error` and
`task.status` are the task's error and status, `task` alone is its whole output, and any other
`task.<path>` is evaluated against its output. References may appear anywhere inside a field's
value (e.g. inside an object); a `{"$ref"/"$template": …}` object must have that one key.
Pure: no Django.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from jmespath.exceptions import JMESPathError

from tasks_catalog.expressions import HARD_MAX_LENGTH, compile_expression

REF = "$ref"
TEMPLATE = "$template"
TEMPLATE_PLACEHOLDER = re.compile(r"\{\{\s*(.*?)\s*\}\}")
TASK_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
RECORD_KEYS = ("error", "status")


class ReferenceError_(ValueError):
    """A reference that cannot be parsed."""


@dataclass(frozen=True)
class Reference:
    task: str
    path: str  # "" for the whole output; "error"/"status" for the record's fields

    @property
    def source(self) -> str:
        return f"{self.task}.{self.path}" if self.path else self.task


def parse_reference(text: Any) -> Reference:
    """Parse `task.path`; raise ReferenceError_ with a readable reason if it is malformed."""
    if not isinstance(text, str) or not text.strip():
        raise ReferenceError_("A reference must be a non-empty string like 'task.path'.")
    text = text.strip()
    task, _, path = text.partition(".")
    if not TASK_NAME.match(task):
        raise ReferenceError_(f"{text!r} does not start with a task name.")
    if path:
        try:
            # The configured length limit is checked when a definition is saved
            # (definition.py); this only keeps absurd input away from the parser.
            compile_expression(path, max_length=HARD_MAX_LENGTH)
        except JMESPathError as exc:
            raise ReferenceError_(f"{text!r}: invalid path: {str(exc).splitlines()[0]}") from None
    return Reference(task=task, path=path)


def is_reference(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and (REF in value or TEMPLATE in value)


def template_references(template: Any) -> list[Reference]:
    """Return the references inside a template string; raise ReferenceError_ if malformed."""
    if not isinstance(template, str):
        raise ReferenceError_("A $template must be a string.")
    return [parse_reference(match) for match in TEMPLATE_PLACEHOLDER.findall(template)]


def find_references(value: Any) -> list[Reference]:
    """Return every reference in `value`; raise ReferenceError_ for a malformed one."""
    if isinstance(value, dict):
        if REF in value or TEMPLATE in value:
            if len(value) != 1:
                raise ReferenceError_("A $ref or $template object must have no other keys.")
            if REF in value:
                return [parse_reference(value[REF])]
            return template_references(value[TEMPLATE])
        found: list[Reference] = []
        for item in value.values():
            found.extend(find_references(item))
        return found
    if isinstance(value, list):
        found = []
        for item in value:
            found.extend(find_references(item))
        return found
    return []
