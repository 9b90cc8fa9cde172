from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from accounts.rate_limits import TaskTestThrottle
from config.errors import NotFound
from config.json_input import JsonTypedInput
from config.openapi import errors
from interactions.statuses import COMPLETED, FAILED
from tasks_catalog.registry import UnknownTaskType, task_types
from tasks_catalog.trial import task_type_try

class TaskTypeSerializer(serializers.Serializer):
    """The shape of a catalog entry (for the OpenAPI document)."""


    type = serializers.CharField()
    name = serializers.CharField()
    description = serializers.CharField()
    provider = serializers.CharField(allow_null=True)
    # DRF pops declared fields from the class, so this does not shadow Serializer.fields.
    fields = serializers.ListField(child=serializers.DictField())  # type: ignore[assignment]
    output = serializers.DictField()


class TaskTestSerializer(JsonTypedInput, serializers.Serializer):
    body = serializers.DictField(help_text="Literal values for the type's fields.")
    integration = serializers.UUIDField(required=False, allow_null=True)
    timeout = serializers.FloatField(
        required=False, allow_null=True, min_value=0.1, max_value=86400,
        help_text="The task's timeout in seconds, as in a definition (default "
        "JUNCTION_DEFAULT_TASK_TIMEOUT, at most JUNCTION_MAX_TASK_TIMEOUT).",
    )

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # The configured maximum, so that the OpenAPI document states it.
        field = self.fields["timeout"]
        self.fields["timeout"] = serializers.FloatField(
            required=False, allow_null=True, min_value=0.1, max_value=settings.JUNCTION_MAX_TASK_TIMEOUT,
            help_text=field.help_text,
        )

    def validate_timeout(self, value: float | None) -> float | None:
        limit = settings.JUNCTION_MAX_TASK_TIMEOUT
        if value is not None and value > limit:
            raise serializers.ValidationError(f"Ensure this value is less than or equal to {limit:g}.")
        return value


class TaskTestResultSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=[str(COMPLETED), str(FAILED)])  # what a trial ends as
    output = serializers.JSONField(allow_null=True)
    error = serializers.CharField(allow_null=True)
    duration_ms = serializers.IntegerField()
    logs = serializers.CharField(
        required=False,
        help_text="`code` only: what the code printed (stdout and stderr, the last "
        "JUNCTION_CODE_MAX_LOG_BYTES characters).",
    )


class TaskTypeViewSet(viewsets.ViewSet):
    """The task catalog: every task type with its fields and output (read-only)."""

    lookup_field = "type"
    lookup_value_regex = "[a-z0-9_]+"

    @extend_schema(responses=TaskTypeSerializer(many=True),
                   description="The task catalog: every task type with its fields and output.")
    def list(self, request):
        return Response([task_type.describe() for task_type in task_types])

    @extend_schema(responses={200: TaskTypeSerializer, **errors((404, "`not_found`: no task type of that name."))},
                   description="One task type of the catalog.")
    def retrieve(self, request, type=None):  # noqa: A002 - the route's name
        try:
            return Response(task_types.get(type).describe())
        except UnknownTaskType as exc:
            raise NotFound(str(exc)) from None

    @extend_schema(
        request=TaskTestSerializer,
        responses={200: TaskTestResultSerializer, **errors(
            (429, "`throttled`: tries per user (JUNCTION_THROTTLE_TASK_TEST), with Retry-After."))},
        description="Run one task now with literal values, to try it before wiring it: its status, output, "
        "error and duration (a failed task is still a 200). Under the same limits as a run.",
    )
    @action(detail=True, methods=["post"], throttle_classes=[TaskTestThrottle])
    def test(self, request, type=None):  # noqa: A002 - the route's name
        """Run one task now with literal values, to try it before wiring it."""
        data = TaskTestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        return Response(task_type_try(user=request.user, type_key=type, **data.validated_data))
