from django.apps import AppConfig


class TasksCatalogConfig(AppConfig):
    name = "tasks_catalog"

    def ready(self) -> None:
        from tasks_catalog.builtins import BUILTIN_TASK_TYPES
        from tasks_catalog.registry import task_types

        for task_type in BUILTIN_TASK_TYPES:
            task_types.register(task_type())
