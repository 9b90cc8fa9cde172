"""Put a service's validation errors onto a Django form, field by field.

The admin saves through the same services as the API; when one refuses the input it raises
DRF's `ValidationError` or an `ApiError` naming fields by dotted path (`name`,
`credentials.host`, `tasks.fetch.body.url`). The admin shows each message on the form field
that path names, and the rest above the form, instead of a 500.
"""
from __future__ import annotations

from collections.abc import Callable

from django import forms
from rest_framework.exceptions import ValidationError as ApiValidationError

from config.errors import ApiError, flatten_details


def service_error_details(exc: ApiValidationError | ApiError) -> dict[str, list[str]]:
    """The `{path: [messages]}` an API response would carry for `exc`."""
    if isinstance(exc, ApiError):
        details = {path: [str(m) for m in (msgs if isinstance(msgs, list) else [msgs])]
                   for path, msgs in exc.details.items()}
        return {"non_field_errors": [str(exc.detail)], **details}
    return flatten_details(exc.detail)


def add_service_errors(
    form: forms.BaseForm, exc: ApiValidationError | ApiError, field_for: Callable[[str], str | None] = lambda p: p,
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
