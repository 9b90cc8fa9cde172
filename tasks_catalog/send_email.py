"""The `send_email` task type: send a message through an SMTP integration.

The message is built and sent by Django's e-mail machinery (EmailMultiAlternatives) over the
connection the `smtp` provider builds (`integrations/smtp.py`): Django's SMTP backend
configured from the integration, its host checked by the SSRF guard and the socket pinned to
the checked address.
"""
from __future__ import annotations

import smtplib
import ssl
from email.utils import make_msgid
from typing import Any

from django.core.mail import EmailMultiAlternatives

from tasks_catalog.base import TaskContext, TaskFailed, TaskType
from tasks_catalog.fields import FieldSpec


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
        recipients = [body["to"]] if isinstance(body["to"], str) else list(body["to"])
        recipients = [address.strip() for address in recipients if address.strip()]
        if not recipients:
            raise TaskFailed("to: at least one recipient is needed")
        smtp = context.client()
        from_email = smtp.from_email
        message_id = make_msgid(domain=from_email.rpartition("@")[2].strip("> ") or "junction.invalid")
        message = EmailMultiAlternatives(
            subject=body["subject"], body=body.get("text") or "", from_email=from_email,
            to=recipients, headers={"Message-ID": message_id}, connection=smtp.connection,
        )
        if body.get("html"):
            message.attach_alternative(body["html"], "text/html")
        server = smtp.server
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
