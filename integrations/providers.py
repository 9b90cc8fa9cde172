"""Integration providers: the kinds of external account a task can use.

To add a provider: subclass `Provider` with a stable `key`, a `name` and its `fields` (mark
secrets with `secret=True`), and add it to `BUILTIN_PROVIDERS` (or register it from your app's
`AppConfig.ready()`). Secret fields are encrypted at rest and never returned by the API.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from config.registry import Registry, UnknownKey


# Longest credential string: tokens, keys, host names and passwords are far shorter.
MAX_CREDENTIAL_LENGTH = 4096


@dataclass(frozen=True)
class ProviderField:
    name: str
    secret: bool = False
    required: bool = True
    type: str = "string"  # string, integer or boolean
    default: Any = None
    minimum: int | None = None  # integers
    maximum: int | None = None
    # Decides where the secrets are sent (a host, a port, TLS, a base URL): changing it requires
    # sending the secrets again (integrations.services.integration_update).
    destination: bool = False

    def describe(self) -> dict[str, Any]:
        described = {"name": self.name, "secret": self.secret, "required": self.required,
                     "type": self.type, "default": self.default, "destination": self.destination}
        if self.type == "string":
            described["max_length"] = MAX_CREDENTIAL_LENGTH
        for bound in ("minimum", "maximum"):
            if getattr(self, bound) is not None:
                described[bound] = getattr(self, bound)
        return described

    def problem(self, value: Any) -> str | None:
        """Return what is wrong with a value of this field, or None."""
        if self.type == "string":
            if not isinstance(value, str):
                return "Must be a string."
            if value == "" and self.required:
                return "This field may not be blank."
            if len(value) > MAX_CREDENTIAL_LENGTH:
                return f"Must be at most {MAX_CREDENTIAL_LENGTH} characters long."
            if "\x00" in value:
                return "Must not contain the NUL character."
            return None
        if self.type == "integer":
            if not isinstance(value, int) or isinstance(value, bool):
                return "Must be an integer."
            if self.minimum is not None and value < self.minimum:
                return f"Must be at least {self.minimum}."
            if self.maximum is not None and value > self.maximum:
                return f"Must be at most {self.maximum}."
            return None
        return None if isinstance(value, bool) else "Must be a boolean."


class Provider:
    key: ClassVar[str]
    name: ClassVar[str]
    fields: ClassVar[tuple[ProviderField, ...]]

    def describe(self) -> dict[str, Any]:
        return {"provider": self.key, "name": self.name, "fields": [f.describe() for f in self.fields]}

    @property
    def secret_fields(self) -> frozenset[str]:
        return frozenset(f.name for f in self.fields if f.secret)

    @property
    def destination_fields(self) -> frozenset[str]:
        return frozenset(f.name for f in self.fields if f.destination)

    def secret_values(self, credentials: dict[str, Any]) -> list[str]:
        """Return the plaintexts that carry a secret as this provider's protocol sends them.

        The secret fields' values, plus any composite a protocol builds from them (SMTP's AUTH
        PLAIN string). `integrations.redaction` derives the encoded forms a server may echo.
        """
        return [str(credentials[name]) for name in sorted(self.secret_fields) if credentials.get(name)]

    def check_credentials(self, credentials: Any, *, partial: bool = False) -> dict[str, list[str]]:
        """Return problems per field of `credentials` (empty when valid).

        With `partial`, missing required fields are not reported (a PATCH keeps stored values).
        """
        if not isinstance(credentials, dict):
            return {"credentials": ["Must be an object."]}
        problems: dict[str, list[str]] = {}
        known = {f.name: f for f in self.fields}
        for name in credentials:
            if name not in known:
                problems[f"credentials.{name}"] = [f"Unknown field for provider {self.key!r}."]
        for spec in self.fields:
            if spec.name not in credentials:
                if spec.required and not partial:
                    problems[f"credentials.{spec.name}"] = ["This field is required."]
                continue
            problem = spec.problem(credentials[spec.name])
            if problem:
                problems[f"credentials.{spec.name}"] = [problem]
        return problems


class Twitter(Provider):
    key = "twitter"
    name = "Twitter / X"
    fields = (
        ProviderField("consumer_key"),
        ProviderField("consumer_secret", secret=True),
        ProviderField("access_token"),
        ProviderField("access_token_secret", secret=True),
    )


class Smtp(Provider):
    key = "smtp"
    name = "SMTP server"
    fields = (
        ProviderField("host", destination=True),
        ProviderField("port", type="integer", required=False, default=587, minimum=1, maximum=65535,
                      destination=True),
        ProviderField("username", required=False, default=""),
        ProviderField("password", secret=True, required=False, default=""),
        ProviderField("use_tls", type="boolean", required=False, default=True, destination=True),
        ProviderField("from_email"),
    )

    def secret_values(self, credentials: dict[str, Any]) -> list[str]:
        values = super().secret_values(credentials)
        password = credentials.get("password")
        if password:
            # AUTH PLAIN (RFC 4616) sends base64("\0" + username + "\0" + password): a server that
            # quotes it echoes the password in a form its own base64 does not match.
            values.append(f"\0{credentials.get('username') or ''}\0{password}")
        return values


class UnknownProvider(UnknownKey):
    pass


providers: Registry[Provider] = Registry("provider", UnknownProvider)
BUILTIN_PROVIDERS: list[type[Provider]] = [Twitter, Smtp]
