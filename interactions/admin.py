"""Admin for interactions: the definition edited as validated JSON, versions, (de)activation.

Saving goes through `interaction_create` / `interaction_update`, so the admin validates a
definition exactly as the API does and a change to the tasks makes a new version.
"""
from __future__ import annotations

import json
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.forms.fields import InvalidJSONInput
from django.utils.html import format_html
from rest_framework.exceptions import ValidationError as ApiValidationError

from config.errors import ApiError
from config.jsonsize import JsonTooDeep, loads_bounded
from interactions import selectors, services, sessions
from interactions.compiled import compiled_version
from interactions.models import Interaction, InteractionVersion, Session, TaskRun


class DefinitionJSONField(forms.JSONField):
    """A JSON textarea that shows the definition indented, for people to edit.

    Parsed with the API's depth limit (docs/limits.md): JSON nested past Python's recursion
    limit is a form error, not a RecursionError.
    """

    def to_python(self, value: Any) -> Any:
        if isinstance(value, str) and value not in self.empty_values and not self.disabled:
            # tasks > task > body > field: the definition's own check names a deep field.
            depth = settings.JUNCTION_MAX_JSON_DEPTH + 4
            try:
                return loads_bounded(value, max_depth=depth)
            except JsonTooDeep:
                raise forms.ValidationError(f"Nested deeper than {depth} levels of arrays and objects.",
                                            code="too_deep") from None
            except ValueError:
                raise forms.ValidationError(self.error_messages["invalid"], code="invalid",
                                            params={"value": value}) from None
        return super().to_python(value)

    def bound_data(self, data: Any, initial: Any) -> Any:
        try:
            return super().bound_data(data, initial)
        except RecursionError:  # redisplaying what failed to_python above
            return InvalidJSONInput(data)

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, InvalidJSONInput):
            return value
        return json.dumps(value, indent=2, ensure_ascii=False)


def _messages(detail: Any) -> list[str]:
    if isinstance(detail, dict):
        return [m for value in detail.values() for m in _messages(value)]
    if isinstance(detail, list):
        return [m for value in detail for m in _messages(value)]
    return [str(detail)]


class InteractionAdminForm(forms.ModelForm):
    tasks = DefinitionJSONField(
        widget=forms.Textarea(attrs={"rows": 24, "cols": 100, "style": "font-family: monospace"}),
        help_text="{task name: {type, integration, body, execute_after, retries, timeout}}: see the API docs.",
    )

    class Meta:
        model = Interaction
        fields = ["user", "name", "description", "deadline_seconds"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk and self.instance.current_version_id:
            self.initial.setdefault("tasks", self.instance.current_version.tasks)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        user = cleaned.get("user") or (self.instance.user if self.instance.user_id else None)
        name = cleaned.get("name")
        if user is not None and name:
            taken = Interaction.objects.filter(user=user, name=name).exclude(pk=self.instance.pk)
            if taken.exists():
                self.add_error("name", "This user already has an interaction with this name.")
        if user is not None and "tasks" in cleaned:
            try:
                services.definition_parse(user=user, tasks=cleaned["tasks"], access=self.instance.access)
            except ApiValidationError as exc:
                detail = exc.detail if isinstance(exc.detail, dict) else {"tasks": exc.detail}
                for path, problems in detail.items():
                    for message in _messages(problems):
                        # Paths such as tasks.fetch.body.url name the task and the field.
                        self.add_error("tasks", f"{path}: {message}")
        return cleaned


class VersionInline(admin.TabularInline):
    """Versions are immutable: listed read-only, newest first."""

    model = InteractionVersion
    extra = 0
    can_delete = False
    fields = ["number", "created_at", "definition"]
    readonly_fields = fields
    ordering = ["-number"]

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="Tasks")
    def definition(self, obj: InteractionVersion) -> str:
        return format_html("<pre style='max-height: 20em; overflow: auto'>{}</pre>", json.dumps(obj.tasks, indent=2))


@admin.register(Interaction)
class InteractionAdmin(admin.ModelAdmin):
    form = InteractionAdminForm
    inlines = [VersionInline]
    list_display = ["name", "user", "is_active", "version", "app", "access", "updated_at"]
    list_filter = ["is_active", "access"]
    search_fields = ["name", "description", "user__username"]
    list_select_related = ["user", "current_version"]
    actions = ["activate", "deactivate"]

    def get_fields(self, request, obj: Interaction | None = None) -> list[str]:
        if obj is None:
            return ["user", "name", "description", "deadline_seconds", "tasks"]
        return ["user", "name", "description", "deadline_seconds", "is_active", "app", "access", "allowed_groups",
                "version", "graph", "plan", "tasks", "created_at", "updated_at"]

    def get_readonly_fields(self, request, obj: Interaction | None = None) -> list[str]:
        if obj is None:
            return []
        # Who may run it is set through the API (PATCH app, access, allowed_groups): shown here.
        return ["user", "is_active", "app", "access", "allowed_groups", "version", "graph", "plan", "created_at",
                "updated_at"]

    @admin.display(description="Celery plan")
    def plan(self, obj: Interaction) -> str:
        if not obj.current_version:
            return "-"
        compiled = compiled_version(obj.current_version.id, obj.current_version.tasks)
        waits = ", ".join(f"{task} also waits for {other}" for task, other in compiled.plan.extra_waits)
        return format_html("<code>{}</code>{}", compiled.plan.render(), f" (extra waits: {waits})" if waits else "")

    @admin.display(description="Version", ordering="current_version__number")
    def version(self, obj: Interaction) -> int | None:
        return obj.current_version.number if obj.current_version else None

    @admin.display(description="Graph")
    def graph(self, obj: Interaction) -> str:
        """The DAG as text: each task with the predecessors and statuses it waits for."""
        tasks = obj.current_version.tasks if obj.current_version else {}
        lines = []
        for name, task in tasks.items():
            after = task.get("execute_after") or {}
            edges = ", ".join(f"{pred} [{'|'.join(s if isinstance(s, list) else [s])}]"
                              for pred, s in after.items()) if isinstance(after, dict) else ""
            lines.append(f"{name} ({task.get('type')})" + (f" ← {edges}" if edges else "  (starts at once)"))
        return format_html("<pre>{}</pre>", "\n".join(lines))

    def save_model(self, request, obj: Interaction, form: InteractionAdminForm, change: bool) -> None:
        data = form.cleaned_data
        if change:
            saved = services.interaction_update(
                interaction=obj, name=data["name"], description=data["description"], tasks=data["tasks"],
                deadline_seconds=data.get("deadline_seconds"),
            )
        else:
            saved = services.interaction_create(
                user=data["user"], name=data["name"], description=data["description"], tasks=data["tasks"],
                deadline_seconds=data.get("deadline_seconds"),
            )
        # The admin goes on with `obj` (messages, log entry, redirect): make it the saved row.
        for field in obj._meta.concrete_fields:
            setattr(obj, field.attname, getattr(saved, field.attname))
        obj._state.adding = False

    def delete_model(self, request, obj: Interaction) -> None:
        services.interaction_delete(interaction=obj)

    def _set_active(self, request, queryset, active: bool) -> None:
        changed = 0
        for interaction in queryset.filter(is_active=not active):
            services.interaction_set_active(interaction=interaction, active=active)
            changed += 1
        verb = "Activated" if active else "Deactivated"
        self.message_user(request, f"{verb} {changed} interaction(s).", messages.SUCCESS)

    @admin.action(description="Activate selected interactions")
    def activate(self, request, queryset) -> None:
        self._set_active(request, queryset, True)

    @admin.action(description="Deactivate selected interactions")
    def deactivate(self, request, queryset) -> None:
        self._set_active(request, queryset, False)


class TaskRunInline(admin.TabularInline):
    """A session's tasks: status, output, error and timing, read-only."""

    model = TaskRun
    extra = 0
    can_delete = False
    fields = ["name", "status", "attempts", "started_at", "finished_at", "duration_ms", "output_json", "error"]
    readonly_fields = fields
    ordering = ["created_at", "name"]

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="Duration (ms)")
    def duration_ms(self, obj: TaskRun) -> int | None:
        return selectors.task_run_data(obj)["duration_ms"]

    @admin.display(description="Output")
    def output_json(self, obj: TaskRun) -> str:
        return format_html("<pre style='max-height: 12em; overflow: auto'>{}</pre>", json.dumps(obj.output, indent=2))


@admin.register(Session)
class SessionAdmin(admin.ModelAdmin):
    """Sessions are records: read-only here, with cancel and retry actions."""

    inlines = [TaskRunInline]
    list_display = ["id", "interaction", "end_user", "version_number", "status", "created_at", "finished_at"]
    list_filter = ["status", ("end_user", admin.EmptyFieldListFilter), "end_user__app"]
    search_fields = ["id", "interaction__name", "user__username", "end_user__email"]
    list_select_related = ["interaction", "version", "end_user"]
    actions = ["cancel", "retry"]
    fields = ["id", "user", "end_user", "interaction", "version_number", "status", "input", "result", "error",
              "created_at", "started_at", "finished_at", "deadline_at", "resumes", "retry_of"]
    readonly_fields = fields

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return request.method in ("GET", "HEAD") and super().has_change_permission(request, obj)

    @admin.display(description="Version")
    def version_number(self, obj: Session) -> int:
        return obj.version.number

    @admin.action(description="Cancel selected sessions")
    def cancel(self, request, queryset) -> None:
        done = 0
        for session in queryset:
            try:
                sessions.session_cancel(session=session)
                done += 1
            except ApiError as exc:
                self.message_user(request, f"{session.id}: {exc.detail}", messages.WARNING)
        self.message_user(request, f"Cancelled {done} session(s).", messages.SUCCESS)

    @admin.action(description="Retry selected sessions (reusing completed outputs)")
    def retry(self, request, queryset) -> None:
        started = [sessions.session_retry(session=session) for session in queryset]
        self.message_user(request, f"Started {len(started)} retry session(s).", messages.SUCCESS)
