"""The registry of task types; built-ins are registered in `TasksCatalogConfig.ready()`."""
from config.registry import Registry, UnknownKey
from tasks_catalog.base import TaskType


class UnknownTaskType(UnknownKey):
    pass


task_types: Registry[TaskType] = Registry("task type", UnknownTaskType)


def find_task_type(key: str) -> TaskType | None:
    """Return the task type registered as `key`, or None."""
    return task_types.get(key) if key in task_types else None
