"""Users and their API keys."""
from __future__ import annotations

import uuid

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.db import models


class TimeStampedModel(models.Model):
    """UUID primary key and creation/update times, for every Junction table."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True


class User(AbstractUser):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    plan = models.CharField(
        max_length=50, default="default",
        help_text="Rate-limit plan: a key of JUNCTION_RATE_PLANS (e.g. default, unlimited).",
    )
    # Every JWT carries the value current when it was issued (claim `tv`); bumping it (password
    # change, deactivation, "log out everywhere") revokes every access and refresh token at once.
    token_version = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "accounts_user"


class ApiKey(TimeStampedModel):
    """A long-lived credential: `Authorization: Api-Key <key>`.

    Only the SHA-256 of the key is stored: keys are 256-bit random strings, so a fast hash is
    enough (nothing to brute-force), and lookups stay one indexed query per request.
    """

    class Scope(models.TextChoices):
        FULL = "full", "Full: everything the user may do"
        RUN = "run", "Run: run interactions and read their sessions"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, db_index=True)
    hashed_key = models.CharField(max_length=64, unique=True)
    scope = models.CharField(max_length=10, choices=Scope.choices, default=Scope.FULL)
    # A run key limited to `interactions` (an explicit flag: a limited key whose interactions
    # were all deleted must run nothing, not everything).
    limited = models.BooleanField(default=False)
    interactions = models.ManyToManyField("interactions.Interaction", blank=True, related_name="+")
    expires_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"
        constraints = [
            models.CheckConstraint(
                condition=models.Q(limited=False) | models.Q(scope="run"), name="api_key_only_run_keys_are_limited"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"
