from django.conf import settings
from django.db import models

from accounts.models import TimeStampedModel


class Interaction(TimeStampedModel):
    """A user's workflow. Its definition lives in immutable versions; the id (and so the
    endpoint URL) never changes."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="interactions")
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True, default="")
    is_active = models.BooleanField(default=False)
    current_version = models.ForeignKey(
        "InteractionVersion", on_delete=models.SET_NULL, related_name="+", null=True, blank=True
    )

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["user", "name"], name="interaction_name_unique_per_user")
        ]

    def __str__(self) -> str:
        return self.name


class InteractionVersion(TimeStampedModel):
    """One immutable definition of an interaction: sessions run a version, never the
    interaction's moving head."""

    interaction = models.ForeignKey(Interaction, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    tasks = models.JSONField()

    class Meta:
        ordering = ["-number"]
        constraints = [
            models.UniqueConstraint(fields=["interaction", "number"], name="version_number_unique"),
            models.CheckConstraint(condition=models.Q(number__gte=1), name="version_number_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.interaction_id} v{self.number}"
