"""Put a service's validation errors onto a Django form, field by field.

The admin saves through the same services as the API; when one refuses the input it raises
an application error (`config.errors`) naming fields by dotted path (`name`,
`credentials.host`, `tasks.fetch.body.url`). The admin shows each message on the form field
that path names, and the rest above the form, instead of a 500.
"""
from __future__ import annotations

from collections.abc import Callable

from django import forms

from config.errors import DomainError


def service_error_details(exc: DomainError) -> dict[str, list[str]]:
    """The `{path: [messages]}` an API response would carry for `exc`."""
    return {"non_field_errors": [exc.message], **exc.details}


def add_service_errors(
    form: forms.BaseForm, exc: DomainError, field_for: Callable[[str], str | None] = lambda p: p,
) -> None:
    """Add every problem of `exc` to `form`: on the field `field_for(path)` names, else above it."""
    for path, messages in service_error_details(exc).items():
        field = field_for(path)
        for message in messages:
            if field in form.fields:
                form.add_error(field, message)
            else:
                label = "" if path == "non_field_errors" else f"{path}: "
                form.add_error(None, f"{label}{message}")
