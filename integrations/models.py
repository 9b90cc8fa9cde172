from django.conf import settings
from django.db import models

from accounts.models import TimeStampedModel


class ProviderApp(TimeStampedModel):
    """A builder's own app registered with a provider (for Twitter: its developer app).

    Accounts connect through it by OAuth (`integrations.connect`); the integrations they create
    take the app's credentials (consumer key and secret) from here, by reference. Non-secret
    credentials are kept in `config`, secret ones only encrypted in `secrets_encrypted`.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="provider_apps")
    name = models.CharField(max_length=100)
    provider = models.CharField(max_length=50)
    config = models.JSONField(default=dict, blank=True)
    secrets_encrypted = models.TextField(blank=True, default="")
    # Where the account owner's browser goes once connected (`?integration=<id>`); empty: the
    # callback answers the integration as JSON.
    callback_url = models.URLField(max_length=2000, blank=True, default="")

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["user", "name"], name="provider_app_name_unique_per_user")
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.provider})"


class Integration(TimeStampedModel):
    """A user's account at a provider. Non-secret credentials are kept in `config`,
    secret ones only encrypted in `secrets_encrypted` (see `integrations.encryption`).

    An integration connected through a provider app (`provider_app`) holds only the account's
    own credentials; the app's (consumer key and secret) are read from the app when a client is
    built (`services.integration_credentials`).
    """

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
    # Deleting the app disconnects the accounts connected through it: their tokens belong to it.
    provider_app = models.ForeignKey(ProviderApp, on_delete=models.CASCADE, null=True, blank=True,
                                     related_name="integrations")
    # The account at the provider as it names it (`@screen_name`), for connected integrations.
    account = models.CharField(max_length=100, blank=True, default="")

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


class OAuthState(TimeStampedModel):
    """One OAuth dance in progress: started by `connect`, ended by the callback.

    The random state is the capability the callback presents; only its SHA-256 is stored, so a
    reader of the table cannot finish someone's dance. The request token secret (temporary
    credentials) is encrypted like every secret. `used_at` makes a state single-use.
    """

    state_digest = models.CharField(max_length=64, unique=True)
    provider_app = models.ForeignKey(ProviderApp, on_delete=models.CASCADE, related_name="oauth_states")
    # Who started the dance: the connected integration is theirs (with `end_user`, below).
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="oauth_states")
    # An end user of the builder's app who started it (issue 10): the integration is theirs
    # (`user` is then the builder who owns the app and the provider app). Null: the builder's own.
    end_user = models.ForeignKey("accounts.EndUser", on_delete=models.CASCADE, null=True, blank=True,
                                 related_name="oauth_states")
    request_token = models.CharField(max_length=200)
    request_token_secret_encrypted = models.TextField()
    used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"OAuth state for {self.provider_app_id} ({'used' if self.used_at else 'open'})"
