from django.urls import reverse
from rest_framework import serializers

from config.json_input import JsonTypedInput
from integrations.models import Integration, ProviderApp
from integrations.providers import CREDENTIALS, providers
from integrations.services import masked_credentials, provider_app_masked_credentials


def oauth_provider_keys() -> list[str]:
    """The registered providers whose accounts connect through a provider app."""
    return sorted(provider.key for provider in providers if provider.connect != CREDENTIALS)


class IntegrationInputSerializer(JsonTypedInput, serializers.Serializer):
    name = serializers.CharField(max_length=100)
    provider = serializers.CharField(max_length=50)
    credentials = serializers.DictField()


class IntegrationUpdateSerializer(JsonTypedInput, serializers.Serializer):
    name = serializers.CharField(max_length=100, required=False)
    credentials = serializers.DictField(required=False)


class IntegrationOutputSerializer(serializers.ModelSerializer):
    credentials = serializers.SerializerMethodField(
        help_text="Non-secret values in clear; secret ones masked."
    )

    class Meta:
        model = Integration
        fields = ["id", "name", "provider", "provider_app", "account", "credentials", "created_at", "updated_at"]
        extra_kwargs = {
            "provider_app": {"help_text": "The provider app the account was connected through (OAuth), or null "
                                          "when its credentials were typed in."},
            "account": {"help_text": "The account as the provider names it (`@screen_name`) when connected by OAuth."},
        }

    def get_credentials(self, obj) -> dict:
        return masked_credentials(obj)


class ProviderSerializer(serializers.Serializer):
    provider = serializers.CharField()
    name = serializers.CharField()
    connect = serializers.ChoiceField(
        choices=["credentials", "oauth1"],
        help_text="How accounts connect: `credentials` typed into an integration, or `oauth1` through a "
                  "provider app (`POST /api/provider-apps/{id}/connect/`). Fields with `app` belong to the app.",
    )
    # DRF pops declared fields from the class, so this does not shadow Serializer.fields.
    fields = serializers.ListField(child=serializers.DictField())  # type: ignore[assignment]


class ProviderAppInputSerializer(JsonTypedInput, serializers.Serializer):
    name = serializers.CharField(max_length=100)
    provider = serializers.ChoiceField(
        choices=[], help_text="A provider whose accounts connect by OAuth (`connect: oauth1` in GET /api/providers/).")
    credentials = serializers.DictField(help_text="The provider's `app` fields: for Twitter consumer_key, consumer_secret.")
    callback_url = serializers.URLField(max_length=2000, required=False, allow_blank=True, default="")


    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["provider"].choices = oauth_provider_keys()


class ProviderAppUpdateSerializer(JsonTypedInput, serializers.Serializer):
    name = serializers.CharField(max_length=100, required=False)
    credentials = serializers.DictField(required=False)
    callback_url = serializers.URLField(max_length=2000, required=False, allow_blank=True)


class ProviderAppOutputSerializer(serializers.ModelSerializer):
    credentials = serializers.SerializerMethodField(help_text="Non-secret values in clear; secret ones masked.")
    oauth_callback = serializers.SerializerMethodField(
        help_text="Junction's OAuth callback: register it as a callback URL of your app at the provider."
    )

    class Meta:
        model = ProviderApp
        fields = ["id", "name", "provider", "credentials", "callback_url", "oauth_callback", "created_at", "updated_at"]

    def get_credentials(self, obj) -> dict:
        return provider_app_masked_credentials(obj)

    def get_oauth_callback(self, obj) -> str:
        request = self.context.get("request")
        path = reverse("oauth-callback")
        return request.build_absolute_uri(path) if request else path


class ConnectStartedSerializer(serializers.Serializer):
    authorize_url = serializers.URLField(help_text="Send the account owner's browser here.")
    state = serializers.CharField(help_text="Comes back to the callback; single use, valid 10 minutes.")


class OAuthCallbackSerializer(serializers.Serializer):
    state = serializers.CharField(max_length=200)
    oauth_token = serializers.CharField(max_length=200)
    oauth_verifier = serializers.CharField(max_length=200)
