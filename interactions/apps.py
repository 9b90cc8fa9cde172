from django.apps import AppConfig


class InteractionsConfig(AppConfig):
    name = "interactions"

    def ready(self) -> None:
        from interactions import openapi  # noqa: F401 - registers the definition's OpenAPI extension
        from interactions import signals  # noqa: F401 - announces changes to the run path's cache
