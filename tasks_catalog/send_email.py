"""The `send_email` task type: send a message through an SMTP integration.

The message is built and sent by Django's e-mail machinery (EmailMultiAlternatives over the
SMTP backend), configured from the integration rather than from settings. `use_tls` means
STARTTLS, except on port 465 where it means implicit TLS (SMTPS), the only thing that port
speaks.

The SMTP host passes the same SSRF guard as `http_request` (`ssrf.checked_addresses`): it is
resolved once, every address must be allowed, and the connection goes to a checked address
(never to the host name again, so a DNS answer that changes in between cannot slip through),
while TLS still verifies the certificate against the host name.
"""
from __future__ import annotations

import smtplib
import socket
import ssl
from email.utils import make_msgid
from typing import Any

from django.core.mail import EmailMultiAlternatives
from django.core.mail.backends.smtp import EmailBackend

from tasks_catalog.base import TaskContext, TaskFailed, TaskType
from tasks_catalog.fields import FieldSpec
from tasks_catalog.ssrf import DestinationRefused, DestinationUnresolved, IPAddress, checked_addresses

SMTPS_PORT = 465
SUBMISSION_PORT = 587  # the provider's default port


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


class SendEmail(TaskType):
    key = "send_email"
    slow = True
    name = "Send e-mail"
    description = "Send an e-mail through an SMTP integration."
    provider = "smtp"
    fields = (
        FieldSpec("to", "string_or_list", required=True, description="Recipient(s)."),
        FieldSpec("subject", "string", required=True, max_length=998, description="Subject line."),
        FieldSpec("text", "string", default="", description="Plain-text body."),
        FieldSpec("html", "string", default="", description="HTML body (optional)."),
    )
    output_description = "The Message-ID of the sent message."
    output_schema = {"type": "object", "properties": {"message_id": {"type": "string"}}}

    def run(self, body: dict[str, Any], context: TaskContext) -> Any:
        credentials = context.credentials
        recipients = [body["to"]] if isinstance(body["to"], str) else list(body["to"])
        recipients = [address.strip() for address in recipients if address.strip()]
        if not recipients:
            raise TaskFailed("to: at least one recipient is needed")
        from_email = credentials["from_email"]
        message_id = make_msgid(domain=from_email.rpartition("@")[2].strip("> ") or "junction.invalid")
        implicit_tls = bool(credentials.get("use_tls")) and int(credentials.get("port") or 0) == SMTPS_PORT
        port = int(credentials.get("port") or SUBMISSION_PORT)
        try:
            addresses = checked_addresses(credentials["host"], port)
        except DestinationRefused as exc:
            raise TaskFailed(f"SMTP server {credentials['host']}: {exc}") from None
        except DestinationUnresolved as exc:
            raise TaskFailed(f"SMTP server: {exc}", transient=exc.transient) from None
        connection = _pinned_backend(
            addresses, host=credentials["host"], port=port,
            username=credentials.get("username") or "", password=credentials.get("password") or "",
            use_tls=bool(credentials.get("use_tls")) and not implicit_tls, use_ssl=implicit_tls,
            timeout=context.timeout or 30,
        )
        message = EmailMultiAlternatives(
            subject=body["subject"], body=body.get("text") or "", from_email=from_email,
            to=recipients, headers={"Message-ID": message_id}, connection=connection,
        )
        if body.get("html"):
            message.attach_alternative(body["html"], "text/html")
        server = f"{credentials['host']}:{credentials.get('port')}"
        try:
            message.send()
        except smtplib.SMTPAuthenticationError as exc:
            raise TaskFailed(f"the SMTP server {server} rejected the login: {_reply(exc)}") from None
        except smtplib.SMTPNotSupportedError as exc:
            raise TaskFailed(f"the SMTP server {server} does not support {exc} (check use_tls)") from None
        except smtplib.SMTPRecipientsRefused as exc:
            refused = "; ".join(f"{address}: {_reply_of(code, text)}" for address, (code, text) in exc.recipients.items())
            transient = all(400 <= code < 500 for code, _ in exc.recipients.values())
            raise TaskFailed(f"the SMTP server refused the recipients: {refused}", transient=transient) from None
        except smtplib.SMTPResponseException as exc:
            raise TaskFailed(f"the SMTP server {server} answered {_reply(exc)}", transient=400 <= exc.smtp_code < 500) from None
        except (smtplib.SMTPServerDisconnected, smtplib.SMTPConnectError) as exc:
            raise TaskFailed(f"lost the connection to the SMTP server {server}: {exc}", transient=True) from None
        except ssl.SSLError as exc:
            raise TaskFailed(f"TLS error with the SMTP server {server}: {exc.reason or exc}") from None
        except TimeoutError:
            raise TaskFailed(f"the SMTP server {server} timed out", transient=True) from None
        except OSError as exc:  # connection refused, unreachable, DNS …
            raise TaskFailed(f"cannot connect to the SMTP server {server}: {exc.strerror or exc}", transient=True) from None
        except UnicodeEncodeError:
            # smtplib encodes the login as ASCII; the exception would quote the password.
            raise TaskFailed("the SMTP username or password has non-ASCII characters, which SMTP AUTH cannot send") from None
        except ValueError as exc:  # a malformed address or a header with a line break
            raise TaskFailed(f"cannot build the message: {exc}") from None
        return {"message_id": message_id}


def _reply(exc: smtplib.SMTPResponseException) -> str:
    return _reply_of(exc.smtp_code, exc.smtp_error)


def _reply_of(code: int, text: bytes | str) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    return f"{code} {text}".strip()
