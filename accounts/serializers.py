from rest_framework import serializers
from rest_framework.exceptions import AuthenticationFailed
from rest_framework_simplejwt import serializers as jwt_serializers

from accounts.models import ApiKey, User
from accounts.services import TOKEN_VERSION_CLAIM
from config.json_input import JsonTypedInput


class RegisterInputSerializer(JsonTypedInput, serializers.Serializer):
    username = serializers.RegexField(r"^[\w.@+-]+\Z", max_length=150)
    email = serializers.EmailField()
    password = serializers.CharField(write_only=True, max_length=128)


class UserOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = User
        fields = ["id", "username", "email", "created_at"]


class ApiKeyInputSerializer(JsonTypedInput, serializers.Serializer):
    name = serializers.CharField(max_length=100)
    scope = serializers.ChoiceField(
        choices=ApiKey.Scope.choices, default=ApiKey.Scope.FULL,
        help_text="`full`: everything the user may do. `run`: only POST /api/interactions/{id}/run/ "
        "and reading the sessions of the interactions it may run; every other route is 403.",
    )
    interactions = serializers.ListField(
        child=serializers.UUIDField(), required=False, allow_null=True, max_length=1000,
        help_text="Scope `run` only: the interactions the key may run (others are 404 to it). "
        "Left out or null: every interaction of the user.",
    )
    expires_at = serializers.DateTimeField(
        required=False, allow_null=True, help_text="After this time the key is refused (401). Null: never."
    )


class ApiKeyOutputSerializer(serializers.ModelSerializer):
    interactions = serializers.SerializerMethodField(
        help_text="The interactions a limited run key may run; null when not limited."
    )

    class Meta:
        model = ApiKey
        fields = ["id", "name", "prefix", "scope", "interactions", "expires_at", "last_used_at", "created_at"]

    def get_interactions(self, obj) -> list[str] | None:
        if not obj.limited:
            return None
        return sorted(str(interaction.pk) for interaction in obj.interactions.all())


class ApiKeyCreatedSerializer(ApiKeyOutputSerializer):
    """Renders a created key: the stored key plus the clear key, shown once."""

    key = serializers.CharField(help_text="The key itself. Shown once: it is stored hashed.")

    class Meta(ApiKeyOutputSerializer.Meta):
        fields = [*ApiKeyOutputSerializer.Meta.fields, "key"]

    def to_representation(self, created):
        return {**ApiKeyOutputSerializer(created.api_key).data, "key": created.key}


class LoginSerializer(JsonTypedInput, jwt_serializers.TokenObtainPairSerializer):
    """simplejwt's login, with the tokens stamped with the user's token version."""

    @classmethod
    def get_token(cls, user):
        token = super().get_token(user)
        token[TOKEN_VERSION_CLAIM] = user.token_version
        return token


class LogoutSerializer(JsonTypedInput, serializers.Serializer):
    refresh = serializers.CharField()
    everywhere = serializers.BooleanField(
        default=False, help_text="Also revoke every other token of the user (all devices)."
    )


class PasswordChangeSerializer(JsonTypedInput, serializers.Serializer):
    old = serializers.CharField(max_length=128)
    new = serializers.CharField(max_length=128)


class TokenPairSerializer(serializers.Serializer):
    access = serializers.CharField()
    refresh = serializers.CharField()


class TokenRefreshSerializer(JsonTypedInput, jwt_serializers.TokenRefreshSerializer):
    """simplejwt's refresh (rotating: the old refresh token is blacklisted), refusing a revoked
    token (`token_version` bumped) and a deleted user's token (401) instead of a crash.

    simplejwt looks the token's user up with `.get()`, which raises DoesNotExist (a 500) once
    the user is deleted; such a token is as dead as an inactive user's.
    """

    def validate(self, attrs):
        token = self.token_class(attrs["refresh"])  # a bad or blacklisted token: TokenError (401)
        user = User.objects.filter(pk=token.payload.get("user_id")).only("token_version", "is_active").first()
        if user is None:
            raise AuthenticationFailed(self.error_messages["no_active_account"], "no_active_account")
        if token.payload.get(TOKEN_VERSION_CLAIM, 0) != user.token_version:
            raise AuthenticationFailed("The token has been revoked.", "token_revoked")
        try:
            return super().validate(attrs)
        except User.DoesNotExist:
            raise AuthenticationFailed(self.error_messages["no_active_account"], "no_active_account") from None
