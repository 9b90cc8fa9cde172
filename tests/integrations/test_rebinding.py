"""Moving an integration to another destination requires its secrets again (docs/security.md)."""
from __future__ import annotations

import pytest

from integrations.models import Integration
from integrations.services import integration_credentials
from tests.conftest import SMTP_CREDENTIALS, make_integration


def patch(api, integration, credentials):
    return api.patch(f"/api/integrations/{integration.id}/", {"credentials": credentials}, format="json")


@pytest.mark.django_db
class TestRebinding:
    @pytest.mark.parametrize("change", [{"host": "mail.example.org"}, {"port": 465}, {"use_tls": True}])
    def test_changing_a_destination_without_the_secret_is_400_naming_it(self, api, user, change):
        integration = make_integration(user, "smtp")
        response = patch(api, integration, change)
        assert response.status_code == 400, response.content
        body = response.json()
        assert set(body) == {"code", "message", "details"}
        assert body["code"] == "secrets_required"
        assert list(body["details"]) == ["credentials.password"]
        assert SMTP_CREDENTIALS["password"] not in response.content.decode()
        stored = Integration.objects.get(id=integration.id)
        assert stored.config == integration.config  # nothing changed

    def test_changing_a_destination_with_the_secret_is_accepted(self, api, user):
        integration = make_integration(user, "smtp")
        response = patch(api, integration, {"host": "mail.example.org", "password": "a-new-password-1"})
        assert response.status_code == 200, response.content
        credentials = integration_credentials(integration=Integration.objects.get(id=integration.id))
        assert credentials["host"] == "mail.example.org" and credentials["password"] == "a-new-password-1"

    def test_the_same_secret_may_be_sent_again(self, api, user):
        integration = make_integration(user, "smtp")
        response = patch(api, integration, {"port": 465, "password": SMTP_CREDENTIALS["password"]})
        assert response.status_code == 200, response.content

    def test_a_field_that_is_not_a_destination_keeps_the_secret(self, api, user):
        integration = make_integration(user, "smtp")
        response = patch(api, integration, {"from_email": "other@example.com", "username": "mailer2"})
        assert response.status_code == 200, response.content
        assert integration_credentials(integration=Integration.objects.get(id=integration.id))["password"] == \
            SMTP_CREDENTIALS["password"]

    def test_an_unchanged_destination_is_no_change(self, api, user):
        integration = make_integration(user, "smtp")
        response = patch(api, integration, {"host": SMTP_CREDENTIALS["host"], "port": SMTP_CREDENTIALS["port"]})
        assert response.status_code == 200, response.content

    def test_no_stored_secret_nothing_to_send(self, api, user):
        integration = make_integration(user, "smtp", password="")
        response = patch(api, integration, {"host": "mail.example.org"})
        assert response.status_code == 200, response.content

    def test_twitter_has_no_destination_field(self, api, user):
        integration = make_integration(user, "twitter")
        assert patch(api, integration, {"consumer_key": "ck-2", "access_token": "at-2"}).status_code == 200


@pytest.mark.django_db
def test_providers_show_which_fields_are_destinations(api):
    smtp = next(p for p in api.get("/api/providers/").json() if p["provider"] == "smtp")
    destinations = {field["name"] for field in smtp["fields"] if field["destination"]}
    assert destinations == {"host", "port", "use_tls"}
