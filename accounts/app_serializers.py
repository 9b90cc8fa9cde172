from rest_framework import serializers

from accounts.models import GROUP_PATTERN, SLUG_PATTERN, App, EndUser, Invitation
from config.json_input import JsonTypedInput


class AppInputSerializer(JsonTypedInput, serializers.Serializer):
    name = serializers.CharField(max_length=100)
    slug = serializers.RegexField(
        SLUG_PATTERN, max_length=50,
        help_text="Unique; end users' routes are /api/apps/{slug}/… (lower-case letters, digits, '-').",
    )
    signup = serializers.ChoiceField(choices=App.Signup.choices, default=App.Signup.INVITE)
    groups = serializers.ListField(
        child=serializers.RegexField(GROUP_PATTERN, max_length=50), required=False, max_length=100,
        help_text="Group names. On PATCH the new set: groups left out are deleted (409 `group_in_use` "
        "while end users are in one or an interaction admits it).",
    )
    default_group = serializers.RegexField(
        GROUP_PATTERN, max_length=50, required=False, help_text="New end users join it. Default: `users` (created if missing)."
    )


class AppOutputSerializer(serializers.ModelSerializer):
    groups = serializers.SerializerMethodField()
    default_group = serializers.SerializerMethodField()
    login_url = serializers.SerializerMethodField(help_text="Where the app's end users log in.")

    class Meta:
        model = App
        fields = ["id", "name", "slug", "signup", "groups", "default_group", "login_url", "created_at", "updated_at"]

    def get_groups(self, obj) -> list[str]:
        return sorted(group.name for group in obj.groups.all())

    def get_default_group(self, obj) -> str | None:
        return next((group.name for group in obj.groups.all() if group.is_default), None)

    def get_login_url(self, obj) -> str:
        path = f"/api/apps/{obj.slug}/auth/login/"
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request else path


class EndUserOutputSerializer(serializers.ModelSerializer):
    group = serializers.CharField(source="group.name")

    class Meta:
        model = EndUser
        fields = ["id", "email", "group", "is_active", "created_at"]


class EndUserUpdateSerializer(JsonTypedInput, serializers.Serializer):
    group = serializers.CharField(max_length=50, required=False)
    is_active = serializers.BooleanField(
        required=False, help_text="false disables the end user: every token they hold stops working (401)."
    )


class InvitationInputSerializer(JsonTypedInput, serializers.Serializer):
    email = serializers.EmailField()


class InvitationOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = Invitation
        fields = ["id", "email", "expires_at", "used_at", "created_at"]


class InvitationCreatedSerializer(InvitationOutputSerializer):
    token = serializers.CharField(help_text="Single use; shown once (stored hashed). The invitee registers with it.")

    class Meta(InvitationOutputSerializer.Meta):
        fields = [*InvitationOutputSerializer.Meta.fields, "token"]

    def to_representation(self, created):
        return {**InvitationOutputSerializer(created.invitation).data, "token": created.token}


# --- the end user's own routes ---------------------------------------------------------------

class EndUserRegisterSerializer(JsonTypedInput, serializers.Serializer):
    email = serializers.EmailField()
    password = serializers.CharField(write_only=True, max_length=128)
    invitation = serializers.CharField(required=False, allow_null=True, allow_blank=True, max_length=200)


class EndUserMeSerializer(serializers.ModelSerializer):
    group = serializers.CharField(source="group.name")

    class Meta:
        model = EndUser
        fields = ["id", "email", "group"]


class EndUserLoginSerializer(JsonTypedInput, serializers.Serializer):
    email = serializers.CharField(max_length=254)
    password = serializers.CharField(max_length=128)


class RefreshSerializer(JsonTypedInput, serializers.Serializer):
    refresh = serializers.CharField()
