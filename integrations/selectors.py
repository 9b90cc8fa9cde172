from django.db.models import QuerySet

from accounts.models import User
from integrations.models import Integration


def integration_list(*, user: User) -> QuerySet[Integration]:
    return Integration.objects.filter(user=user)


def integration_providers(*, user: User, ids: set[str]) -> dict[str, str]:
    """Map each of `ids` that is one of the user's integrations to its provider."""
    return {
        str(pk): provider
        for pk, provider in Integration.objects.filter(user=user, id__in=ids).values_list("id", "provider")
    }
