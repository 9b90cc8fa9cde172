from django.apps import AppConfig


class IntegrationsConfig(AppConfig):
    name = "integrations"

    def ready(self) -> None:
        from integrations.builtins import BUILTIN_PROVIDERS
        from integrations.providers import providers

        for provider in BUILTIN_PROVIDERS:
            providers.register(provider())

        from integrations import openapi  # noqa: F401 - registers the OpenAPI extension
