"""Describe Junction's authentication in the OpenAPI document (imported in `ready()`)."""
from drf_spectacular.contrib.rest_framework_simplejwt import SimpleJWTScheme
from drf_spectacular.extensions import OpenApiAuthenticationExtension


class RevocableJWTScheme(SimpleJWTScheme):
    target_class = "accounts.authentication.RevocableJWTAuthentication"
    name = "jwtAuth"


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.authentication.ApiKeyAuthentication"
    name = "ApiKeyAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": (
                "`Api-Key <key>`; create keys at POST /api/auth/api-keys/. A key of scope `full` "
                "acts as its user everywhere. A key of scope `run` may only call "
                "POST /api/interactions/{id}/run/ and read sessions (GET /api/sessions/, "
                "/api/sessions/{id}/ and its /events/) of the interactions it may run; every other "
                "route answers 403 `insufficient_scope`. A run key limited to chosen interactions "
                "finds no other interaction or session (404). An expired or revoked key is 401."
            ),
        }


class EndUserJWTScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.enduser_auth.EndUserJWTAuthentication"
    name = "endUserJwtAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": (
                "An end user's access token, from POST /api/apps/{slug}/auth/login/ (docs/end-users.md). "
                "Accepted on /api/apps/{slug}/… routes of that app only, and on "
                "POST /api/interactions/{id}/run/ of its interactions whose access is `end_users` or `public`. "
                "Refused (401) on every builder route and on another app's routes."
            ),
        }
