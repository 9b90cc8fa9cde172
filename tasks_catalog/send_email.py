"""The `send_email` task type: send a message through an SMTP integration."""
from __future__ import annotations

from typing import Any

from tasks_catalog.base import TaskContext, TaskFailed, TaskType
from tasks_catalog.fields import FieldSpec


class SendEmail(TaskType):
    key = "send_email"
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
