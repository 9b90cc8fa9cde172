"""The `smtp` provider: credentials typed in, and an SMTP connection through the SSRF guard.

The connection is Django's SMTP e-mail backend configured from the integration rather than
from settings. `use_tls` means STARTTLS, except on port 465 where it means implicit TLS
(SMTPS), the only thing that port speaks.

The host passes the same SSRF guard as `http_request` (`ssrf.checked_addresses`): it is
resolved once, every address must be allowed, and the connection goes to a checked address
(never to the host name again, so a DNS answer that changes in between cannot slip through),
while TLS still verifies the certificate against the host name.
"""
from __future__ import annotations

import smtplib
import socket
from dataclasses import dataclass
from typing import Any

from django.core.mail.backends.smtp import EmailBackend

from integrations.providers import ClientUnavailable, Provider, credential
from tasks_catalog.ssrf import (
    DestinationRefused,
    DestinationUnresolved,
    IPAddress,
    checked_addresses,
)

SMTPS_PORT = 465
SUBMISSION_PORT = 587  # the provider's default port


@dataclass(frozen=True)
class SmtpClient:
    """What `send_email` needs: an open-on-demand connection, the sender, and how to name the server."""

    connection: EmailBackend
    from_email: str
    server: str  # host:port, for messages


class Smtp(Provider):
    key = "smtp"
    name = "SMTP server"
    fields = (
        credential("host", destination=True),
        credential("port", type="integer", required=False, default=SUBMISSION_PORT, minimum=1, maximum=65535,
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

    def client(self, credentials: dict[str, Any], *, timeout: float) -> SmtpClient:
        """The SMTP backend pinned to the host's checked addresses; raises ClientUnavailable
        when the SSRF guard refuses the host or it does not resolve."""
        host = credentials["host"]
        implicit_tls = bool(credentials.get("use_tls")) and int(credentials.get("port") or 0) == SMTPS_PORT
        port = int(credentials.get("port") or SUBMISSION_PORT)
        try:
            addresses = checked_addresses(host, port)
        except DestinationRefused as exc:
            raise ClientUnavailable(f"SMTP server {host}: {exc}") from None
        except DestinationUnresolved as exc:
            raise ClientUnavailable(f"SMTP server: {exc}", transient=exc.transient) from None
        connection = _pinned_backend(
            addresses, host=host, port=port,
            username=credentials.get("username") or "", password=credentials.get("password") or "",
            use_tls=bool(credentials.get("use_tls")) and not implicit_tls, use_ssl=implicit_tls,
            timeout=timeout,
        )
        return SmtpClient(connection=connection, from_email=credentials["from_email"],
                          server=f"{host}:{credentials.get('port')}")


def _connect(addresses: tuple[IPAddress, ...], port: int, timeout, source_address) -> socket.socket:
    """Open a TCP connection to the first checked address that answers."""
    last: OSError | None = None
    for address in addresses:
        try:
            return socket.create_connection((str(address), port), timeout, source_address)
        except OSError as exc:
            last = exc
    raise last or OSError("no address to connect to")


def _pinned_backend(addresses: tuple[IPAddress, ...], **options) -> EmailBackend:
    """Django's SMTP backend, connecting to `addresses` whatever the host name resolves to now.

    smtplib keeps the host name (`_host`) for EHLO, STARTTLS's server_hostname and the
    certificate check; only the socket goes to the checked address.
    """

    class PinnedSMTP(smtplib.SMTP):
        def _get_socket(self, host, port, timeout):
            return _connect(addresses, port, timeout, self.source_address)

    class PinnedSMTPS(smtplib.SMTP_SSL):
        def _get_socket(self, host, port, timeout):
            return self.context.wrap_socket(_connect(addresses, port, timeout, self.source_address),
                                            server_hostname=self._host)

    class PinnedBackend(EmailBackend):
        @property
        def connection_class(self):
            return PinnedSMTPS if self.use_ssl else PinnedSMTP

    return PinnedBackend(fail_silently=False, **options)
