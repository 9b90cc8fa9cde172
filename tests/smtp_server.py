"""A local SMTP server for `send_email` tests: aiosmtpd on 127.0.0.1, a free port, AUTH.

AUTH is offered without TLS (`auth_require_tls=False`) because the test server has no
certificate; it is required, and only the given username/password pass. Received messages
are parsed into `email.message.EmailMessage` objects in `messages`.
"""
from __future__ import annotations

import email
import email.policy
import socket
import warnings
from dataclasses import dataclass, field

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class _Collector:
    messages: list = field(default_factory=list)
    envelopes: list = field(default_factory=list)

    async def handle_DATA(self, server, session, envelope):
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        self.messages.append(email.message_from_bytes(envelope.original_content, policy=email.policy.default))
        return "250 Message accepted for delivery"


class _Controller(Controller):
    def factory(self):
        with warnings.catch_warnings():
            # Deliberate: the test server has no certificate, so AUTH goes without TLS.
            warnings.filterwarnings("ignore", "Requiring AUTH while not requiring TLS")
            return super().factory()


class SmtpServer:
    """Start with `start()`, stop with `stop()`; `messages` holds what arrived."""

    def __init__(self, username: str, password: str) -> None:
        self.username, self.password = username, password
        self.port = free_port()
        self.failed_logins = 0
        self._collector = _Collector()
        self._controller = _Controller(
            self._collector, hostname="127.0.0.1", port=self.port,
            authenticator=self._authenticate, auth_required=True, auth_require_tls=False,
        )

    @property
    def messages(self) -> list[email.message.EmailMessage]:
        return self._collector.messages

    @property
    def envelopes(self) -> list[tuple[str, list[str]]]:
        return self._collector.envelopes

    def _authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == self.username
            and auth_data.password.decode() == self.password
        )
        if not ok:
            self.failed_logins += 1
        return AuthResult(success=ok, handled=False)

    def start(self) -> "SmtpServer":
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()
