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


# --- Apps and their end users (docs/end-users.md) ------------------------------------------------

SLUG_PATTERN = r"^[a-z0-9](?:[a-z0-9-]{0,48}[a-z0-9])?\Z"
GROUP_PATTERN = r"^[A-Za-z0-9_.-]{1,50}\Z"


class App(TimeStampedModel):
    """A builder's application: its end users log in under `/api/apps/{slug}/` and call the
    interactions linked to it."""

    class Signup(models.TextChoices):
        OPEN = "open", "Open: anyone may register"
        INVITE = "invite", "Invite only: registration needs an invitation"
        CLOSED = "closed", "Closed: nobody may register"

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="apps")
    name = models.CharField(max_length=100)
    slug = models.SlugField(max_length=50, unique=True)
    signup = models.CharField(max_length=10, choices=Signup.choices, default=Signup.INVITE)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.slug


class AppGroup(TimeStampedModel):
    """A group of an app's end users; interactions may admit only some groups."""

    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="groups")
    name = models.CharField(max_length=50)
    is_default = models.BooleanField(default=False, help_text="New end users join this group.")

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["app", "name"], name="app_group_name_unique_per_app"),
            models.UniqueConstraint(fields=["app"], condition=models.Q(is_default=True),
                                    name="app_group_one_default_per_app"),
        ]

    def __str__(self) -> str:
        return self.name


class EndUser(TimeStampedModel):
    """A user of a builder's app (not a Junction account): e-mail and password, per app.

    The password is hashed with Django's configured hashers. `token_version` works as
    `User.token_version`: bumping it (password change, disabling) revokes every token issued.
    """

    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="end_users")
    email = models.EmailField(help_text="Stored lower-cased: unique per app whatever the case.")
    password = models.CharField(max_length=128)
    # RESTRICT: a group in use cannot be deleted on its own, but deleting the app deletes both.
    group = models.ForeignKey(AppGroup, on_delete=models.RESTRICT, related_name="end_users")
    is_active = models.BooleanField(default=True)
    token_version = models.PositiveIntegerField(default=0)
    last_login_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "end user"
        constraints = [
            models.UniqueConstraint(fields=["app", "email"], name="end_user_email_unique_per_app"),
        ]
        indexes = [models.Index(fields=["app", "group"])]

    def __str__(self) -> str:
        return self.email

    # What DRF and Django expect of `request.user` (an end user is never a builder).
    is_authenticated = True
    is_anonymous = False
    is_end_user = True
    is_staff = False
    is_superuser = False

    def set_password(self, raw: str) -> None:
        from django.contrib.auth.hashers import make_password

        self.password = make_password(raw)

    def check_password(self, raw: str) -> bool:
        from django.contrib.auth.hashers import check_password

        return check_password(raw, self.password)


class Invitation(TimeStampedModel):
    """A single-use invitation to register in an invite-only app; only the token's SHA-256 is kept."""

    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="invitations")
    email = models.EmailField()
    hashed_token = models.CharField(max_length=64, unique=True)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    used_by = models.ForeignKey(EndUser, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.email} ({self.app})"
