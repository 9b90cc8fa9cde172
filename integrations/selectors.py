import uuid

from django.db.models import QuerySet

from accounts.models import User
from integrations.models import Integration, ProviderApp


def integration_list(*, user: User) -> QuerySet[Integration]:
    """The builder's own integrations (their end users' accounts are not theirs to use)."""
    return Integration.objects.filter(user=user, end_user__isnull=True)


def end_user_integration_list(*, end_user) -> QuerySet[Integration]:
    """The accounts an end user connected (docs/end-users.md)."""
    return Integration.objects.filter(end_user=end_user)


def provider_app_list(*, user: User) -> QuerySet[ProviderApp]:
    return ProviderApp.objects.filter(user=user)


def integration_providers(*, user: User, ids: set[str]) -> dict[str, str]:
    """Map each of `ids` that is one of the user's integrations to its provider.

    Ids that are not UUIDs cannot be integrations: they are left out (reported as unknown by
    the caller) rather than handed to the database, which would reject the whole query.
    """
    valid = {str(pk) for pk in ids if _is_uuid(pk)}
    return {
        str(pk): provider
        for pk, provider in Integration.objects.filter(user=user, end_user__isnull=True, id__in=valid).values_list("id", "provider")
    }


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True
