from django.conf import settings
from django.db import models

from accounts.models import TimeStampedModel


class Integration(TimeStampedModel):
    """A user's account at a provider. Non-secret credentials are kept in `config`,
    secret ones only encrypted in `secrets_encrypted` (see `integrations.encryption`)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="integrations")
    # An end user's own account (docs/end-users.md): `user` stays the builder who owns the app,
    # but only that end user's sessions use it, and only for tasks whose definition leaves the
    # integration out. Never offered to the builder's definitions.
    end_user = models.ForeignKey("accounts.EndUser", on_delete=models.CASCADE, null=True, blank=True,
                                 related_name="integrations")
    name = models.CharField(max_length=100)
    provider = models.CharField(max_length=50)
    config = models.JSONField(default=dict, blank=True)
    secrets_encrypted = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["user", "name"], condition=models.Q(end_user__isnull=True),
                                    name="integration_name_unique_per_user"),
            models.UniqueConstraint(fields=["end_user", "name"], condition=models.Q(end_user__isnull=False),
                                    name="integration_name_unique_per_end_user"),
        ]
        indexes = [models.Index(fields=["end_user", "provider"])]

    def __str__(self) -> str:
        return f"{self.name} ({self.provider})"
