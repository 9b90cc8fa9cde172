"""Integration providers: the kinds of external account a task can use.

To add a provider: subclass `Provider` in a module of `integrations/` (see `twitter.py`,
`smtp.py`) with a stable `key`, a `name`, its `fields` (made with `credential()`: `FieldSpec`s,
the one field vocabulary; mark secrets with `secret=True`) and `client()`, which builds the
client its task types use, and add the class to `BUILTIN_PROVIDERS` in
`integrations/builtins.py` (or register an instance from your app's
`AppConfig.ready()`). Secret fields are encrypted at rest and never returned by the API.

A provider that connects accounts by OAuth (`connect = OAUTH1`) also marks the fields that
belong to the builder's registered app (`credential(..., app=True)`: Twitter's consumer key and
secret, kept on a `ProviderApp`) and implements `authorization()` and `access()`, the two
halves of the dance that `integrations/connect.py` drives (docs/providers.md).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from config.registry import Registry, UnknownKey
from tasks_catalog.fields import FieldSpec, validate

# How a provider's accounts are connected: `credentials` typed in by the builder (SMTP), or the
# OAuth 1.0a three-legged flow through a provider app (Twitter).
CREDENTIALS = "credentials"
OAUTH1 = "oauth1"

# Longest credential string: tokens, keys, host names and passwords are far shorter.
MAX_CREDENTIAL_LENGTH = 4096


def credential(
    name: str, *, secret: bool = False, required: bool = True, type: str = "string", default: Any = None,
    minimum: int | None = None, maximum: int | None = None, destination: bool = False, app: bool = False,
) -> FieldSpec:
    """A credential field: a `FieldSpec` (the one field vocabulary) with the credentials' rules.

    Strings are at most MAX_CREDENTIAL_LENGTH characters without NUL, and not empty when required.
    `destination`: the field decides where the secrets are sent (a host, a port, TLS, a base URL),
    so changing it requires sending the secrets again (integrations.services.integration_update).
    `app`: the field belongs to the builder's app registered with the provider (a `ProviderApp`),
    not to one account: an integration connected through the app takes it from there.
    """
    is_string = type == "string"
    return FieldSpec(
        name, type, required=required, default=default, minimum=minimum, maximum=maximum,
        max_length=MAX_CREDENTIAL_LENGTH if is_string else None, secret=secret, destination=destination,
        allow_blank=not (is_string and required), allow_nul=not is_string, app=app,
    )


class ClientUnavailable(Exception):
    """The provider's client cannot be built or reached (a refused host, a failed exchange).

    The message is shown to the user (a task's error, an API error): it never quotes a
    credential. `transient` when trying again later may succeed.
    """

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


@dataclass(frozen=True)
class Authorization:
    """The first half of an OAuth 1.0a dance: where to send the account owner, and the
    temporary credentials (request token) that the second half needs."""

    authorize_url: str
    request_token: str
    request_token_secret: str = field(repr=False)


@dataclass(frozen=True)
class ConnectedAccount:
    """The second half's result: the account's own credentials and how the provider names it."""

    credentials: dict[str, Any] = field(repr=False)
    account: str = ""


class Provider:
    key: ClassVar[str]
    name: ClassVar[str]
    fields: ClassVar[tuple[FieldSpec, ...]]
    connect: ClassVar[str] = CREDENTIALS

    def describe(self) -> dict[str, Any]:
        return {
            "provider": self.key, "name": self.name, "connect": self.connect,
            "fields": [{**f.describe(), "secret": f.secret, "destination": f.destination, "app": f.app}
                       for f in self.fields],
        }

    def client(self, credentials: dict[str, Any], *, timeout: float) -> Any:
        """Build the client a task type uses from the integration's decrypted credentials.

        The one place, besides `secret_values`, that reads credential keys. Raises
        ClientUnavailable when it cannot be built (the SSRF guard refused the host …).
        """
        raise ClientUnavailable(f"provider {self.key!r} builds no client")

    def authorization(self, app_credentials: dict[str, Any], *, callback: str, timeout: float) -> Authorization:
        """OAuth providers: obtain a request token; return where to send the account owner.

        Raises ClientUnavailable (transient when the provider could not be reached).
        """
        raise ClientUnavailable(f"provider {self.key!r} does not connect accounts by OAuth")

    def access(
        self, app_credentials: dict[str, Any], *, request_token: str, request_token_secret: str,
        verifier: str, timeout: float,
    ) -> ConnectedAccount:
        """OAuth providers: exchange the verifier for the account's access credentials."""
        raise ClientUnavailable(f"provider {self.key!r} does not connect accounts by OAuth")

    @property
    def app_fields(self) -> tuple[FieldSpec, ...]:
        return tuple(f for f in self.fields if f.app)

    @property
    def account_fields(self) -> tuple[FieldSpec, ...]:
        return tuple(f for f in self.fields if not f.app)

    @property
    def secret_fields(self) -> frozenset[str]:
        return frozenset(f.name for f in self.fields if f.secret)

    def secret_values(self, credentials: dict[str, Any]) -> list[str]:
        """Return the plaintexts that carry a secret as this provider's protocol sends them.

        The secret fields' values, plus any composite a protocol builds from them (SMTP's AUTH
        PLAIN string). `integrations.redaction` derives the encoded forms a server may echo.
        """
        return [str(credentials[name]) for name in sorted(self.secret_fields) if credentials.get(name)]

    def check_credentials(
        self, credentials: Any, *, partial: bool = False, fields: tuple[FieldSpec, ...] | None = None,
    ) -> dict[str, list[str]]:
        """Return problems per field of `credentials` (empty when valid).

        With `partial`, missing required fields are not reported (a PATCH keeps stored values).
        `fields` narrows the check to some of the provider's fields (a provider app's, or an
        account's when the app supplies the rest): any other field is unknown.
        """
        if not isinstance(credentials, dict):
            return {"credentials": ["Must be an object."]}
        # A null is a value here (and a wrong one), not a field left out.
        return validate(self.fields if fields is None else fields, credentials, prefix="credentials.",
                        partial=partial, null_is_missing=False, unknown=f"Unknown field for provider {self.key!r}.")


class UnknownProvider(UnknownKey):
    pass


providers: Registry[Provider] = Registry("provider", UnknownProvider)
