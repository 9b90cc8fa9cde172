from django.conf import settings
from django.db import models

from accounts.models import TimeStampedModel


class Integration(TimeStampedModel):
    """A user's account at a provider. Non-secret credentials are kept in `config`,
    secret ones only encrypted in `secrets_encrypted` (see `integrations.encryption`)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="integrations")
    name = models.CharField(max_length=100)
    provider = models.CharField(max_length=50)
    config = models.JSONField(default=dict, blank=True)
    secrets_encrypted = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["user", "name"], name="integration_name_unique_per_user")
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.provider})"
