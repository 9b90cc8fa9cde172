"""The `send_email` task type: Django's SMTP backend against an aiosmtpd server with AUTH."""
from __future__ import annotations

import pytest

from interactions.executor import run_with_body
from tasks_catalog.base import TaskFailed
from tasks_catalog.registry import task_types
from tests.conftest import smtp_integration
from tests.smtp_server import free_port

pytestmark = pytest.mark.django_db

BODY = {"to": "ops@example.com", "subject": "Order 42 shipped", "text": "Plain words.", "html": "<p><b>Rich</b> words.</p>"}


def send(user, integration, **body):
    task_type = task_types.get("send_email")
    concrete = {spec.name: {**BODY, **body}.get(spec.name, spec.default) for spec in task_type.fields}
    return run_with_body(task_type=task_type, body=concrete, integration_id=str(integration.id),
                         user_id=user.id, timeout=10)


def failure(user, integration, **body) -> TaskFailed:
    with pytest.raises(TaskFailed) as caught:
        send(user, integration, **body)
    return caught.value


def test_message_arrives_with_subject_text_and_html(user, smtp_server):
    output = send(user, smtp_integration(user, smtp_server))
    [message] = smtp_server.messages
    assert output == {"message_id": message["Message-ID"]}
    assert output["message_id"].startswith("<") and output["message_id"].endswith("@example.com>")
    assert message["Subject"] == "Order 42 shipped"
    assert message["From"] == "junction@example.com"
    assert message["To"] == "ops@example.com"
    assert message.get_content_type() == "multipart/alternative"
    assert message.get_body(("plain",)).get_content().strip() == "Plain words."
    assert message.get_body(("html",)).get_content().strip() == "<p><b>Rich</b> words.</p>"
    assert smtp_server.envelopes == [("junction@example.com", ["ops@example.com"])]
    assert smtp_server.failed_logins == 0  # the server requires AUTH: the integration's login passed


def test_text_only_message_is_not_multipart(user, smtp_server):
    send(user, smtp_integration(user, smtp_server), html="")
    [message] = smtp_server.messages
    assert message.get_content_type() == "text/plain"
    assert message.get_content().strip() == "Plain words."


def test_several_recipients(user, smtp_server):
    send(user, smtp_integration(user, smtp_server), to=["a@example.com", "b@example.com"])
    assert smtp_server.envelopes == [("junction@example.com", ["a@example.com", "b@example.com"])]
    assert smtp_server.messages[0]["To"] == "a@example.com, b@example.com"


def test_wrong_password_is_a_permanent_failure_without_the_password(user, smtp_server):
    error = failure(user, smtp_integration(user, smtp_server, password="smtp-wrong-secret-8"))
    assert not error.transient
    assert str(error).startswith(f"the SMTP server 127.0.0.1:{smtp_server.port} rejected the login: 535")
    assert "smtp-wrong-secret-8" not in str(error)
    assert smtp_server.failed_logins >= 1 and smtp_server.messages == []  # smtplib tries each mechanism


def test_a_non_ascii_password_is_reported_without_quoting_it(user, smtp_server):
    error = failure(user, smtp_integration(user, smtp_server, password="smtp-sécret-ü"))
    assert not error.transient
    assert str(error) == "the SMTP username or password has non-ASCII characters, which SMTP AUTH cannot send"
    assert smtp_server.messages == []


def test_no_login_is_refused_by_a_server_that_requires_it(user, smtp_server):
    error = failure(user, smtp_integration(user, smtp_server, username="", password=""))
    assert not error.transient
    assert "530" in str(error) and smtp_server.messages == []


def test_tls_against_a_server_without_starttls_is_a_clear_error(user, smtp_server):
    error = failure(user, smtp_integration(user, smtp_server, use_tls=True))
    assert not error.transient
    assert "does not support STARTTLS extension not supported by server. (check use_tls)" in str(error)


def test_connection_refused_is_transient(user):
    integration = smtp_integration(user, type("Closed", (), {"port": free_port()}))
    error = failure(user, integration)
    assert error.transient
    assert "cannot connect to the SMTP server 127.0.0.1:" in str(error)


def test_a_header_injection_is_refused(user, smtp_server):
    error = failure(user, smtp_integration(user, smtp_server), subject="Hi\nBcc: victim@example.com")
    assert not error.transient
    assert "cannot build the message" in str(error)
    assert smtp_server.messages == []
