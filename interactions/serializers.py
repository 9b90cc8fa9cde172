from django.conf import settings
from rest_framework import serializers

from accounts.models import GROUP_PATTERN
from config.json_input import JsonTypedInput
from interactions.models import MAX_SESSION_DEADLINE, Interaction, InteractionVersion
from interactions.statuses import SessionStatus, TaskStatus, choices


class DefinitionField(serializers.JSONField):
    """A definition's `tasks` (validated by the services; typed in OpenAPI by interactions/openapi.py)."""


class InteractionInputSerializer(JsonTypedInput, serializers.Serializer):
    """The definition: POST and PUT need name and tasks; PATCH any subset."""

    name = serializers.CharField(max_length=100)
    description = serializers.CharField(allow_blank=True, required=False, default="")
    tasks = DefinitionField()
    deadline_seconds = serializers.IntegerField(
        min_value=1, max_value=MAX_SESSION_DEADLINE, required=False, allow_null=True,
        help_text="Sessions running longer end as timed_out (default: the server's setting; at "
        "most JUNCTION_MAX_SESSION_DEADLINE, 86400 unless configured). "
        "Write-only: the representation keeps SPEC's fields; the admin shows it.",
    )

    app = serializers.UUIDField(
        required=False, allow_null=True,
        help_text="One of your apps (/api/apps/): its end users may run the interaction when `access` allows it.",
    )
    access = serializers.ChoiceField(
        choices=Interaction.Access.choices, required=False,
        help_text="Who may run it: `owner` (default: you, with your JWT or an API key), `end_users` (the app's "
        "end users with their access token, of `allowed_groups`), `public` (anyone, no credentials, rate-limited "
        "per address). Not `owner` needs `app`. A setting: changing it makes no new version.",
    )
    allowed_groups = serializers.ListField(
        child=serializers.RegexField(GROUP_PATTERN, max_length=50), required=False, max_length=100,
        help_text="Groups of the app admitted when access is `end_users`; empty (default): every group.",
    )
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # The configured maximum (not only the hard one), so that the OpenAPI document states it.
        field = self.fields["deadline_seconds"]
        self.fields["deadline_seconds"] = serializers.IntegerField(
            min_value=1, max_value=settings.JUNCTION_MAX_SESSION_DEADLINE, required=False, allow_null=True,
            help_text=field.help_text,
        )

    def validate_deadline_seconds(self, value: int | None) -> int | None:
        limit = settings.JUNCTION_MAX_SESSION_DEADLINE
        if value is not None and value > limit:
            raise serializers.ValidationError(f"Ensure this value is less than or equal to {limit}.")
        return value


class InteractionOutputSerializer(serializers.ModelSerializer):
    version = serializers.IntegerField(source="current_version.number", read_only=True)
    tasks = DefinitionField(source="current_version.tasks", read_only=True)
    endpoint_url = serializers.SerializerMethodField()

    class Meta:
        model = Interaction
        fields = ["id", "name", "description", "is_active", "version", "tasks", "endpoint_url",
                  "app", "access", "allowed_groups", "created_at", "updated_at"]

    def get_endpoint_url(self, obj) -> str:
        path = f"/api/interactions/{obj.id}/run/"
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request else path


class InteractionVersionSerializer(serializers.ModelSerializer):
    version = serializers.IntegerField(source="number")
    tasks = DefinitionField()

    class Meta:
        model = InteractionVersion
        fields = ["id", "version", "tasks", "created_at"]


class EndpointSerializer(serializers.Serializer):
    method = serializers.CharField()
    access = serializers.CharField(help_text="Who may call: owner, end_users or public.")
    authentication = serializers.DictField(
        help_text="How the caller authenticates: `scheme`, and for end users the app's `login_url`, "
        "`allowed_groups` and an example `header`."
    )
    url = serializers.URLField()
    headers = serializers.DictField()
    body = serializers.JSONField()
    schema = serializers.JSONField()
    curl = serializers.CharField()


class PlanSerializer(serializers.Serializer):
    version = serializers.IntegerField()
    canvas = serializers.CharField(help_text="The Celery canvas, e.g. chain(fetch, group(tweet, alert))")
    extra_waits = serializers.ListField(child=serializers.DictField(), help_text="Waits the plan adds beyond the DAG's edges")
    celery = serializers.CharField(
        allow_null=True,
        help_text="The canvas sent to the workers: the plan without its fused tasks (null: the call runs everything)",
    )
    fused = serializers.ListField(
        child=serializers.DictField(),
        help_text="Pure tasks run inline where they become ready: {task, after, runs_in: call | worker (fused)}",
    )
    chain_links = serializers.ListField(
        child=serializers.DictField(),
        help_text="Links of a chain that the worker step of the link before may run itself, without a broker "
                  "hop: {task, in_step_of}",
    )


class TaskRunSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=choices(TaskStatus))
    output = serializers.JSONField(allow_null=True)
    error = serializers.CharField(allow_null=True)
    attempts = serializers.IntegerField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    duration_ms = serializers.IntegerField(allow_null=True)
    worker = serializers.CharField(
        allow_null=True,
        help_text="Where the task ran: the Celery worker's node name (e.g. celery@host-b), or api@<host> "
        "for a task run by the process that took the call; null while it never ran.",
    )


class SessionSerializer(serializers.Serializer):
    """The session as the API renders it (built by `selectors.session_data`)."""

    id = serializers.UUIDField()
    interaction = serializers.UUIDField()
    end_user = serializers.UUIDField(allow_null=True, help_text="The end user who called; null: the builder or anonymous.")
    version = serializers.IntegerField()
    status = serializers.ChoiceField(choices=choices(SessionStatus))
    input = serializers.JSONField()
    result = serializers.JSONField(allow_null=True)
    error = serializers.CharField(allow_null=True)
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    duration_ms = serializers.IntegerField(allow_null=True)
    tasks = serializers.DictField(child=TaskRunSerializer())
