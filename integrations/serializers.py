from rest_framework import serializers

from integrations.models import Integration
from integrations.services import masked_credentials


class IntegrationInputSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    provider = serializers.CharField(max_length=50)
    credentials = serializers.DictField()


class IntegrationUpdateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100, required=False)
    credentials = serializers.DictField(required=False)


class IntegrationOutputSerializer(serializers.ModelSerializer):
    credentials = serializers.SerializerMethodField(
        help_text="Non-secret values in clear; secret ones masked."
    )

    class Meta:
        model = Integration
        fields = ["id", "name", "provider", "credentials", "created_at", "updated_at"]

    def get_credentials(self, obj) -> dict:
        return masked_credentials(obj)


class ProviderSerializer(serializers.Serializer):
    provider = serializers.CharField()
    name = serializers.CharField()
    # DRF pops declared fields from the class, so this does not shadow Serializer.fields.
    fields = serializers.ListField(child=serializers.DictField())  # type: ignore[assignment]
