"""The integrations admin: creating and editing with the provider's fields, through the services;
no secret ever in a page; builders see their own."""
from __future__ import annotations

from integrations.models import Integration
from integrations.services import integration_credentials
from tests.admin_helpers import query_count
from tests.conftest import SMTP_CREDENTIALS, TWITTER_CREDENTIALS, make_integration, make_user

INTEGRATIONS = "/admin/integrations/integration/"
SECRETS = [TWITTER_CREDENTIALS["consumer_secret"], TWITTER_CREDENTIALS["access_token_secret"],
           SMTP_CREDENTIALS["password"]]


def twitter_form(**changes) -> dict:
    data = {"name": "my twitter", **{f"credential_{k}": v for k, v in TWITTER_CREDENTIALS.items()}}
    return {**data, **changes}


def smtp_form(**changes) -> dict:
    data = {"name": "my smtp", **{f"credential_{k}": v for k, v in SMTP_CREDENTIALS.items() if k != "use_tls"}}
    if SMTP_CREDENTIALS["use_tls"]:
        data["credential_use_tls"] = "on"  # an unchecked box is not sent at all
    return {**data, **changes}


def assert_no_secret(html: str) -> None:
    for secret in SECRETS:
        assert secret not in html


def test_add_asks_for_the_provider_first(superuser_client):
    html = superuser_client.get(f"{INTEGRATIONS}add/").content.decode()
    assert 'href="?provider=twitter"' in html and 'href="?provider=smtp"' in html
    assert superuser_client.get(f"{INTEGRATIONS}add/", {"provider": "nope"}).status_code == 200  # asks again


def test_add_form_renders_the_providers_fields(superuser_client):
    html = superuser_client.get(f"{INTEGRATIONS}add/", {"provider": "smtp"}).content.decode()
    assert 'type="password" name="credential_password"' in html
    assert 'type="number" name="credential_port"' in html and 'value="587"' in html
    assert 'type="checkbox" name="credential_use_tls"' in html and "checked" in html
    assert 'name="credential_host"' in html and 'name="user"' in html  # a superuser picks the owner


def test_create_through_the_service_keeps_secrets_encrypted(superuser_client, user):
    response = superuser_client.post(f"{INTEGRATIONS}add/?provider=twitter", twitter_form(user=str(user.pk)),
                                     follow=True)
    assert response.status_code == 200
    assert_no_secret(response.content.decode())
    integration = Integration.objects.get(user=user, name="my twitter")
    assert integration.provider == "twitter"
    assert integration_credentials(integration=integration) == TWITTER_CREDENTIALS
    assert TWITTER_CREDENTIALS["consumer_secret"] not in integration.secrets_encrypted
    assert "consumer_secret" not in integration.config


def test_optional_fields_take_their_defaults_and_checkboxes_count(superuser_client, user):
    data = smtp_form(user=str(user.pk), credential_port="", credential_username="", credential_password="")
    assert superuser_client.post(f"{INTEGRATIONS}add/?provider=smtp", data).status_code == 302
    credentials = integration_credentials(integration=Integration.objects.get(name="my smtp"))
    assert (credentials["port"], credentials["username"], credentials["password"]) == (587, "", "")
    assert credentials["use_tls"] is False  # the box was left unchecked


def test_a_refused_form_never_sends_the_typed_secrets_back(superuser_client, user):
    data = twitter_form(user=str(user.pk), credential_consumer_key="")
    response = superuser_client.post(f"{INTEGRATIONS}add/?provider=twitter", data)
    assert response.status_code == 200
    assert "credential_consumer_key" in response.context["adminform"].form.errors
    assert_no_secret(response.content.decode())
    assert not Integration.objects.exists()


def test_the_services_errors_land_on_their_fields(superuser_client, user):
    make_integration(user, name="taken")
    response = superuser_client.post(f"{INTEGRATIONS}add/?provider=twitter",
                                     twitter_form(user=str(user.pk), name="taken"))
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["name"] == ["You already have an integration with this name."]
    assert_no_secret(response.content.decode())


def test_change_page_shows_no_secret_and_blank_secrets_keep_theirs(superuser_client, user):
    integration = make_integration(user, provider="smtp", name="mail")
    url = f"{INTEGRATIONS}{integration.pk}/change/"
    html = superuser_client.get(url).content.decode()
    assert_no_secret(html)
    assert integration.secrets_encrypted not in html
    assert 'value="mailer"' in html and 'placeholder="********"' in html
    data = smtp_form(name="renamed", credential_password="")
    assert superuser_client.post(url, data).status_code == 302
    integration.refresh_from_db()
    assert integration.name == "renamed"
    assert integration_credentials(integration=integration)["password"] == SMTP_CREDENTIALS["password"]


def test_moving_the_smtp_host_needs_the_password_again_as_in_the_api(superuser_client, user):
    integration = make_integration(user, provider="smtp", name="mail")
    url = f"{INTEGRATIONS}{integration.pk}/change/"
    data = smtp_form(name="mail", credential_host="mail.example.org", credential_password="")
    response = superuser_client.post(url, data)
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["credential_password"]
    integration.refresh_from_db()
    assert integration.config["host"] == SMTP_CREDENTIALS["host"]

    data["credential_password"] = "new-secret-4"
    assert superuser_client.post(url, data).status_code == 302
    credentials = integration_credentials(integration=Integration.objects.get(pk=integration.pk))
    assert (credentials["host"], credentials["password"]) == ("mail.example.org", "new-secret-4")
    assert "new-secret-4" not in superuser_client.get(url).content.decode()


def test_a_builder_creates_their_own_and_sees_only_theirs(builder_client, builder, other_user):
    theirs = make_integration(other_user, name="theirs")
    page = builder_client.get(f"{INTEGRATIONS}add/?provider=twitter").content.decode()
    assert 'name="user"' not in page
    assert builder_client.post(f"{INTEGRATIONS}add/?provider=twitter", twitter_form()).status_code == 302
    assert Integration.objects.get(name="my twitter").user == builder

    listing = builder_client.get(INTEGRATIONS).content.decode()
    assert "my twitter" in listing and "theirs" not in listing
    assert builder_client.get(f"{INTEGRATIONS}{theirs.pk}/change/").status_code == 302  # not found
    response = builder_client.post(f"{INTEGRATIONS}{theirs.pk}/change/", twitter_form(name="stolen"))
    assert response.status_code == 302
    theirs.refresh_from_db()
    assert theirs.name == "theirs"


def test_integration_list_query_count_does_not_grow_with_rows(superuser_client, user):
    make_integration(user)
    few = query_count(lambda: superuser_client.get(INTEGRATIONS))
    for index in range(8):
        make_integration(make_user(f"owner{index}"))
    assert query_count(lambda: superuser_client.get(INTEGRATIONS)) == few
