from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin

from accounts import services
from accounts.models import ApiKey, User


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    list_display = ["username", "email", "is_staff", "is_active", "created_at"]


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Keys are created through the API (the clear key is shown once there); here they are
    listed and revoked. The hash is never displayed."""

    list_display = ["name", "prefix", "user", "created_at", "revoked_at"]
    list_filter = ["revoked_at"]
    search_fields = ["name", "prefix", "user__username"]
    fields = ["user", "name", "prefix", "created_at", "revoked_at"]
    readonly_fields = ["user", "name", "prefix", "created_at"]
    actions = ["revoke"]

    def has_add_permission(self, request) -> bool:
        return False

    @admin.action(description="Revoke selected API keys")
    def revoke(self, request, queryset):
        live = list(queryset.filter(revoked_at__isnull=True))
        for api_key in live:
            services.api_key_revoke(api_key=api_key)
        self.message_user(request, f"Revoked {len(live)} key(s).")
