"""Redaction of secrets in the encoded forms a protocol may echo, and never as a guessing oracle."""
from __future__ import annotations

import base64
import logging

import pytest

from integrations.providers import providers
from integrations.redaction import MIN_SECRET_LENGTH, redact, secret_forms
from tasks_catalog.base import TaskFailed, TaskType
from tasks_catalog.fields import FieldSpec
from tasks_catalog.registry import task_types
from tests.conftest import SMTP_CREDENTIALS, make_integration

SMTP = providers.get("smtp")
PASSWORD = SMTP_CREDENTIALS["password"]
FORMS = secret_forms(SMTP_CREDENTIALS, SMTP)


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


@pytest.mark.parametrize("echo", [
    PASSWORD,
    b64(PASSWORD.encode()),  # AUTH LOGIN's password line
    b64(f"\0{SMTP_CREDENTIALS['username']}\0{PASSWORD}".encode()),  # AUTH PLAIN
    base64.urlsafe_b64encode(PASSWORD.encode()).decode(),
    b64(b"x" + PASSWORD.encode() + b"y"),  # inside longer base64, each alignment
    b64(b"xy" + PASSWORD.encode()),
    b64(b"xyz" + PASSWORD.encode() + b"!"),
    '"' + PASSWORD + '"',
])
def test_every_echoed_form_is_cut(echo):
    text = f"535 5.7.8 rejected: {echo} (end)"
    redacted = redact(text, FORMS)
    assert "***" in redacted
    assert PASSWORD not in redacted
    for form in FORMS:
        assert form not in redacted


def test_percent_and_escaped_spellings_are_cut():
    secret = 'p@ss "word"/\\secret'
    forms = secret_forms({**SMTP_CREDENTIALS, "password": secret}, SMTP)
    for echo in ("p%40ss%20%22word%22%2F%5Csecret", 'p@ss \\"word\\"/\\\\secret'):
        assert redact(f"<{echo}>", forms) == "<***>", echo


def test_a_piece_of_a_secret_is_not_cut():
    """Only a whole secret is cut: a prefix, a suffix or a shorter guess shows no difference."""
    for guess in (PASSWORD[:-1], PASSWORD[1:], PASSWORD[:MIN_SECRET_LENGTH], PASSWORD.upper()):
        assert redact(f"echo {guess} echo", FORMS) == f"echo {guess} echo"


def test_a_short_secret_is_not_redacted_in_any_form():
    credentials = {**SMTP_CREDENTIALS, "password": "hunter2"}
    assert len("hunter2") < MIN_SECRET_LENGTH
    assert secret_forms(credentials, SMTP) == []


def test_every_match_looks_the_same():
    credentials = {"consumer_secret": "first-secret-value", "access_token_secret": "second-secret-value"}
    forms = secret_forms(credentials, providers.get("twitter"))
    assert redact("a first-secret-value b second-secret-value", forms) == "a *** b ***"


def test_no_secret_no_forms():
    assert secret_forms({**SMTP_CREDENTIALS, "password": ""}, SMTP) == []
    assert redact("text", []) == "text"


class EchoingSmtpType(TaskType):
    """Fails the way an SMTP library does when a server quotes the AUTH line it was sent."""

    key = "echoing_smtp_test_type"
    name = "Echoing SMTP (tests only)"
    provider = "smtp"
    fields = (FieldSpec("mode", "string", required=True),)

    def run(self, body, context):
        c = context.client().connection  # the e-mail backend holds the login, as smtplib does
        plain = b64(f"\0{c.username}\0{c.password}".encode())
        if body["mode"] == "crash":
            raise RuntimeError(f"server closed after AUTH PLAIN {plain}")
        raise TaskFailed(f"535 authentication failed for AUTH PLAIN {plain} / {b64(c.password.encode())}")


@pytest.fixture
def echoing():
    task_types.register(EchoingSmtpType())
    yield
    task_types._items.pop(EchoingSmtpType.key)


@pytest.mark.django_db
@pytest.mark.parametrize("mode", ["crash", "fail"])
def test_encoded_forms_are_cut_from_a_task_error_and_the_log(echoing, api, user, mode, caplog):
    integration = make_integration(user, "smtp")
    with caplog.at_level(logging.DEBUG):
        response = api.post(f"/api/task-types/{EchoingSmtpType.key}/test/",
                            {"body": {"mode": mode}, "integration": str(integration.id)}, format="json")
    assert response.status_code == 200, response.content
    result = response.json()
    assert result["status"] == "failed" and "***" in result["error"]
    for form in FORMS:
        assert form not in response.content.decode()
        assert form not in caplog.text


class EchoingSmtpServer:
    """A raw SMTP server on 127.0.0.1 that rejects AUTH quoting the line it was sent, as a
    careless or hostile server may: the real smtplib client and `send_email` talk to it."""

    def __init__(self, mechanism: str) -> None:
        import socket
        import threading

        self.mechanism = mechanism
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        with conn, conn.makefile("rb") as lines:
            conn.sendall(b"220 echo ESMTP\r\n")
            for raw in lines:
                line = raw.decode().strip()
                verb = line.split(" ")[0].upper()
                if verb in ("EHLO", "HELO"):
                    conn.sendall(f"250-echo\r\n250 AUTH {self.mechanism}\r\n".encode())
                elif verb == "AUTH" and line.upper().startswith("AUTH LOGIN"):
                    conn.sendall(b"334 UGFzc3dvcmQ6\r\n")  # then the password line comes alone
                elif verb == "AUTH" or (self.mechanism == "LOGIN" and verb not in ("QUIT", "RSET")):
                    # AUTH PLAIN <base64>, or AUTH LOGIN's bare base64 password line: quoted back.
                    conn.sendall(f"535 5.7.8 rejected: {line}\r\n".encode())
                elif verb == "QUIT":
                    conn.sendall(b"221 bye\r\n")
                    return
                else:
                    conn.sendall(b"250 ok\r\n")

    def stop(self) -> None:
        self.sock.close()


@pytest.mark.django_db
@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_a_server_echoing_the_auth_line_does_not_leak_the_password(api, user, mechanism):
    server = EchoingSmtpServer(mechanism)
    try:
        integration = make_integration(user, "smtp", port=server.port)
        response = api.post("/api/task-types/send_email/test/",
                            {"body": {"to": "a@example.com", "subject": "s", "text": "t"},
                             "integration": str(integration.id), "timeout": 5}, format="json")
    finally:
        server.stop()
    assert response.status_code == 200, response.content
    result = response.json()
    assert result["status"] == "failed" and "535" in result["error"], result
    assert "***" in result["error"], result["error"]
    for form in FORMS:
        assert form not in response.content.decode()
