from rest_framework import serializers
from rest_framework.exceptions import AuthenticationFailed
from rest_framework_simplejwt import serializers as jwt_serializers

from accounts.models import ApiKey, User


class RegisterInputSerializer(serializers.Serializer):
    username = serializers.RegexField(r"^[\w.@+-]+\Z", max_length=150)
    email = serializers.EmailField()
    password = serializers.CharField(write_only=True, max_length=128)


class UserOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = User
        fields = ["id", "username", "email", "created_at"]


class ApiKeyInputSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)


class ApiKeyOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = ApiKey
        fields = ["id", "name", "prefix", "created_at"]


class ApiKeyCreatedSerializer(serializers.Serializer):
    """Renders `accounts.services.CreatedApiKey`: the stored key plus the clear key, shown once."""

    id = serializers.UUIDField(source="api_key.id")
    name = serializers.CharField(source="api_key.name")
    prefix = serializers.CharField(source="api_key.prefix")
    created_at = serializers.DateTimeField(source="api_key.created_at")
    key = serializers.CharField(help_text="The key itself. Shown once: it is stored hashed.")


class TokenRefreshSerializer(jwt_serializers.TokenRefreshSerializer):
    """simplejwt's refresh, with a deleted user's token refused (401) instead of a crash.

    simplejwt looks the token's user up with `.get()`, which raises DoesNotExist (a 500) once
    the user is deleted; such a token is as dead as an inactive user's.
    """

    def validate(self, attrs):
        try:
            return super().validate(attrs)
        except User.DoesNotExist:
            raise AuthenticationFailed(self.error_messages["no_active_account"], "no_active_account") from None
