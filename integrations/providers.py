"""Integration providers: the kinds of external account a task can use.

To add a provider: subclass `Provider` with a stable `key`, a `name` and its `fields` (made with
`credential()`: `FieldSpec`s, the one field vocabulary; mark secrets with `secret=True`), and add it to `BUILTIN_PROVIDERS` (or register it from your app's
`AppConfig.ready()`). Secret fields are encrypted at rest and never returned by the API.
"""
from __future__ import annotations

from typing import Any, ClassVar

from config.registry import Registry, UnknownKey
from tasks_catalog.fields import FieldSpec, validate


# Longest credential string: tokens, keys, host names and passwords are far shorter.
MAX_CREDENTIAL_LENGTH = 4096


def credential(
    name: str, *, secret: bool = False, required: bool = True, type: str = "string", default: Any = None,
    minimum: int | None = None, maximum: int | None = None, destination: bool = False,
) -> FieldSpec:
    """A credential field: a `FieldSpec` (the one field vocabulary) with the credentials' rules.

    Strings are at most MAX_CREDENTIAL_LENGTH characters without NUL, and not empty when required.
    `destination`: the field decides where the secrets are sent (a host, a port, TLS, a base URL),
    so changing it requires sending the secrets again (integrations.services.integration_update).
    """
    is_string = type == "string"
    return FieldSpec(
        name, type, required=required, default=default, minimum=minimum, maximum=maximum,
        max_length=MAX_CREDENTIAL_LENGTH if is_string else None, secret=secret, destination=destination,
        allow_blank=not (is_string and required), allow_nul=not is_string,
    )


class Provider:
    key: ClassVar[str]
    name: ClassVar[str]
    fields: ClassVar[tuple[FieldSpec, ...]]

    def describe(self) -> dict[str, Any]:
        return {
            "provider": self.key, "name": self.name,
            "fields": [{**f.describe(), "secret": f.secret, "destination": f.destination} for f in self.fields],
        }

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
        # A null is a value here (and a wrong one), not a field left out.
        return validate(self.fields, credentials, prefix="credentials.", partial=partial, null_is_missing=False,
                        unknown=f"Unknown field for provider {self.key!r}.")


class Twitter(Provider):
    key = "twitter"
    name = "Twitter / X"
    fields = (
        credential("consumer_key"),
        credential("consumer_secret", secret=True),
        credential("access_token"),
        credential("access_token_secret", secret=True),
    )


class Smtp(Provider):
    key = "smtp"
    name = "SMTP server"
    fields = (
        credential("host", destination=True),
        credential("port", type="integer", required=False, default=587, minimum=1, maximum=65535,
                   destination=True),
        credential("username", required=False, default=""),
        credential("password", secret=True, required=False, default=""),
        credential("use_tls", type="boolean", required=False, default=True, destination=True),
        credential("from_email"),
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
