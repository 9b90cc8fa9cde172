"""What an API key's scope lets it reach (docs/security.md).

A `full` key acts as its user on every route. A `run` key reaches only the actions a view lists
in `run_key_actions` (running an interaction, reading sessions); everything else is 403
`insufficient_scope`. A run key limited to chosen interactions is further scoped by
`accounts.ownership.OwnedQuerysetMixin`: any other interaction, and its sessions, is not found.
"""
from __future__ import annotations

from rest_framework.permissions import BasePermission

from accounts.models import ApiKey


def run_key(request) -> ApiKey | None:
    """The request's API key when it is of scope `run`, else None."""
    key = getattr(request, "auth", None)
    return key if isinstance(key, ApiKey) and key.scope == ApiKey.Scope.RUN else None


class ApiKeyScope(BasePermission):
    message = "This API key may only run interactions and read their sessions (scope 'run')."
    code = "insufficient_scope"

    def has_permission(self, request, view) -> bool:
        if run_key(request) is None:
            return True
        return getattr(view, "action", None) in getattr(view, "run_key_actions", ())
