"""`send_email` passes the SSRF guard of `http_request` and connects to the checked address."""
from __future__ import annotations

import socket

import pytest
from django.test import override_settings

from tests.conftest import smtp_integration
from tests.tasks_catalog.test_send_email import failure, send

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "[::1]", "10.0.0.1", "169.254.169.254",
                                  "0.0.0.0", "::ffff:127.0.0.1"])
def test_a_host_outside_the_allowed_networks_is_refused_before_connecting(user, smtp_server, host):
    with override_settings(JUNCTION_SSRF_ALLOWED_NETWORKS=[]):
        error = failure(user, smtp_integration(user, smtp_server, host=host))
    assert "refused to connect" in str(error) and not error.transient
    assert smtp_server.messages == [] and smtp_server.failed_logins == 0
    assert "smtp-very-secret-3" not in str(error)


def test_an_allowed_host_name_is_reached_at_its_checked_address(user, smtp_server, monkeypatch):
    resolved: list = []
    real = socket.getaddrinfo

    def once(host, *args, **kwargs):  # the name is resolved once, by the guard
        resolved.append(host)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", once)
    send(user, smtp_integration(user, smtp_server, host="localhost"))
    assert len(smtp_server.messages) == 1
    assert resolved.count("localhost") == 1


def test_an_unresolvable_host_fails_the_task(user, smtp_server):
    error = failure(user, smtp_integration(user, smtp_server, host="no-such-host.invalid"))
    assert "cannot resolve" in str(error)


def test_the_test_endpoint_refuses_loopback_smtp(api, user, smtp_server):
    integration = smtp_integration(user, smtp_server)
    with override_settings(JUNCTION_SSRF_ALLOWED_NETWORKS=[]):
        response = api.post("/api/task-types/send_email/test/",
                            {"body": {"to": "a@example.com", "subject": "s"}, "integration": str(integration.id)},
                            format="json")
    result = response.json()
    assert result["status"] == "failed" and "loopback" in result["error"]
    assert smtp_server.messages == []
