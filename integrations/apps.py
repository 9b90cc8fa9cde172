from django.apps import AppConfig


class IntegrationsConfig(AppConfig):
    name = "integrations"

    def ready(self) -> None:
        from integrations.providers import BUILTIN_PROVIDERS, providers

        for provider in BUILTIN_PROVIDERS:
            providers.register(provider())

        from integrations import openapi  # noqa: F401 - registers the OpenAPI extension
