"""Admin for interactions and sessions (docs/admin.md).

Interactions: the definition edited as validated JSON, activate/deactivate buttons, versions
with a diff between any two. Saving goes through `interaction_create` / `interaction_update`,
so the admin validates a definition exactly as the API does and a change to the tasks makes a
new version. Sessions: a list with coloured statuses, durations and filters, task runs to the
millisecond, cancel and retry through the session services. A builder sees only their own
objects (`accounts.admin_scoping`).
"""
from __future__ import annotations

import difflib
import json
import uuid
from datetime import datetime
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.forms.fields import InvalidJSONInput
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
)
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from accounts.admin_scoping import OwnerScopedAdmin, sees_everything
from accounts.models import App, User
from config.errors import DomainError, InvalidInput
from config.jsonsize import JsonTooDeep, loads_bounded
from interactions import services, sessions
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


class InteractionAdminForm(forms.ModelForm):
    tasks = DefinitionJSONField(
        widget=forms.Textarea(attrs={"rows": 24, "cols": 100, "style": "font-family: monospace"}),
        help_text="{task name: {type, integration, body, execute_after, retries, timeout}}: see the API docs.",
    )
    # The canvas's task positions, posted by its script (interactions/admin_canvas.py, docs/ui.md).
    layout = forms.JSONField(required=False, widget=forms.HiddenInput)
    # Who may run it (SPEC §2.7, docs/end-users.md): settings of the interaction, saved through
    # the same service as the API's PATCH.
    app = forms.ModelChoiceField(
        queryset=App.objects.none(), required=False,
        help_text="One of your apps: its end users may run the interaction when access allows it.")
    access = forms.ChoiceField(
        choices=Interaction.Access.choices, initial=Interaction.Access.OWNER, required=False,
        help_text="owner: you (JWT or API key); end_users: the app's end users; public: anyone, rate-limited.")
    allowed_groups = forms.CharField(
        required=False, max_length=5000,
        help_text="With end_users: the app's groups admitted, separated by commas (empty: every group).")

    class Meta:
        model = Interaction
        fields = ["user", "name", "description", "deadline_seconds"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk and self.instance.current_version_id:
            self.initial.setdefault("tasks", self.instance.current_version.tasks)
            self.initial.setdefault("layout", self.instance.current_version.layout)
        if self.instance.pk:
            self.initial.setdefault("app", self.instance.app_id)
            self.initial.setdefault("access", self.instance.access)
            self.initial.setdefault("allowed_groups", ", ".join(self.instance.allowed_groups or []))
        owner_id = self.instance.user_id
        chooser = self.fields["app"]
        assert isinstance(chooser, forms.ModelChoiceField)
        chooser.queryset = App.objects.filter(owner_id=owner_id) if owner_id else App.objects.all()
        self.definition_errors: dict[str, list[str]] = {}  # by path, for the canvas to place

    def clean_allowed_groups(self) -> list[str]:
        raw = self.cleaned_data.get("allowed_groups") or ""
        return [name.strip() for name in raw.split(",") if name.strip()]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or self.cleaned_data
        user = cleaned.get("user") or (self.instance.user if self.instance.user_id else None)
        name = cleaned.get("name")
        if user is not None and name:
            taken = Interaction.objects.filter(user=user, name=name).exclude(pk=self.instance.pk)
            if taken.exists():
                self.add_error("name", "This user already has an interaction with this name.")
        # Left out of a post: unchanged (owner for a new interaction).
        access = cleaned["access"] = cleaned.get("access") or self.instance.access or Interaction.Access.OWNER
        if user is not None:
            try:
                services.access_check(user=user, app=cleaned.get("app"), access=access,
                                      allowed_groups=cleaned.get("allowed_groups") or [])
            except InvalidInput as exc:
                for path, problems in exc.details.items():
                    for message in problems:
                        self.add_error(path if path in self.fields else None, message)
        if user is not None and "tasks" in cleaned:
            try:
                services.definition_parse(user=user, tasks=cleaned["tasks"], access=access)
            except InvalidInput as exc:
                for path, problems in exc.details.items():
                    self.definition_errors[str(path)] = list(problems)
                    for message in problems:
                        # Paths such as tasks.fetch.body.url name the task and the field.
                        self.add_error("tasks", f"{path}: {message}")
        return cleaned


# --- display helpers ------------------------------------------------------------------------

def _when(value: datetime | None, *, ms: bool = False) -> str:
    """A time in the server's zone, to the second (lists) or the millisecond (details)."""
    if value is None:
        return "-"
    local = timezone.localtime(value)
    shown = local.strftime("%Y-%m-%d %H:%M:%S")
    return f"{shown}.{local.microsecond // 1000:03d}" if ms else shown


def _duration(start: datetime | None, end: datetime | None) -> str:
    """How long from `start` to `end` (to now, with a trailing "…", while still running)."""
    if start is None:
        return "-"
    running = end is None
    elapsed_ms = int(((end or timezone.now()) - start).total_seconds() * 1000)
    if elapsed_ms < 1000:
        text = f"{elapsed_ms} ms"
    elif elapsed_ms < 60_000:
        text = f"{elapsed_ms / 1000:.3f} s".replace(".000 s", " s")
    else:
        minutes, rest = divmod(elapsed_ms // 1000, 60)
        hours, minutes = divmod(minutes, 60)
        text = f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {rest:02d} s"
    return f"{text}…" if running else text


def _status_badge(status: str, label: str) -> str:
    # Colours in static/interactions/junction-admin.css; `data-status` is the API's value.
    return format_html('<span class="junction-status junction-status-{}" data-status="{}">{}</span>',
                       status, status, label)


def _pretty_json(value: Any, max_height: str = "20em") -> str:
    if value is None:
        return "-"
    text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)
    return format_html('<pre class="junction-json" style="max-height: {}">{}</pre>', max_height, text)


class JunctionAdminMedia:
    css = {"all": ["interactions/junction-admin.css"]}


# --- interactions ---------------------------------------------------------------------------

def version_diff(*, older: InteractionVersion, newer: InteractionVersion) -> dict[str, Any]:
    """Compare two versions' definitions: tasks added, removed, changed, and a unified diff.

    Both are pretty-printed with sorted keys first, so the diff shows changes of meaning, not
    of key order.
    """
    def pretty(tasks: Any) -> list[str]:
        return json.dumps(tasks, indent=2, sort_keys=True, ensure_ascii=False).splitlines()

    old_tasks, new_tasks = older.tasks or {}, newer.tasks or {}
    lines = list(difflib.unified_diff(pretty(old_tasks), pretty(new_tasks),
                                      fromfile=f"v{older.number}", tofile=f"v{newer.number}", lineterm=""))
    kinds = {"+": "added", "-": "removed", "@": "hunk"}
    return {
        "added": sorted(set(new_tasks) - set(old_tasks)),
        "removed": sorted(set(old_tasks) - set(new_tasks)),
        "changed": sorted(name for name in set(old_tasks) & set(new_tasks) if old_tasks[name] != new_tasks[name]),
        # The two file header lines are replaced by the page's own headings.
        "lines": [{"text": line, "kind": kinds.get(line[:1], "context")} for line in lines[2:]],
    }


@admin.register(Interaction)
class InteractionAdmin(OwnerScopedAdmin):
    """Interactions: the definition as validated JSON, (de)activation buttons, versions and diffs.

    The change page's additions (buttons, links, versions) are template blocks in
    `templates/admin/interactions/interaction/change_form.html`; the views behind the buttons
    are `get_urls` below and call the same services as the API.
    """

    form = InteractionAdminForm
    list_display = ["name", "user", "is_active", "version", "app", "access", "sessions_link", "updated_at"]
    list_filter = ["is_active", "access"]
    search_fields = ["name", "description", "user__username"]
    list_select_related = ["user", "current_version"]
    actions = ["activate", "deactivate"]
    Media = JunctionAdminMedia

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        found = super().get_queryset(request)
        match = getattr(request, "resolver_match", None)
        if match is not None and match.url_name == "interactions_interaction_changelist":
            found = found.defer("current_version__tasks")  # a list shows numbers, not definitions
        return found

    def get_fields(self, request, obj: Interaction | None = None):
        if obj is None:
            owner = ["user"] if sees_everything(request) else []
            return [*owner, "name", "description", "deadline_seconds", "app", "access", "allowed_groups", "tasks"]
        return ["user", "name", "description", "deadline_seconds", "is_active", "app", "access", "allowed_groups",
                "version", "graph", "plan", "tasks", "created_at", "updated_at"]

    def get_readonly_fields(self, request, obj: Interaction | None = None) -> list[str]:
        if obj is None:
            return []
        return ["user", "is_active", "version", "graph", "plan", "created_at", "updated_at"]

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        if obj is not None or sees_everything(request):
            return form
        owner = request.user

        class OwnedInteractionForm(form):
            """A builder's new interaction is theirs: the definition is checked against their integrations."""

            def __init__(self, *args: Any, **kw: Any) -> None:
                super().__init__(*args, **kw)
                self.instance.user = owner
                chooser = self.fields["app"]
                assert isinstance(chooser, forms.ModelChoiceField)
                chooser.queryset = App.objects.filter(owner=owner)  # only their own apps to choose

        return OwnedInteractionForm

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "user":
            kwargs["queryset"] = User.objects.order_by("username")
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

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

    @admin.display(description="Sessions")
    def sessions_link(self, obj: Interaction) -> str:
        url = reverse("admin:interactions_session_changelist")
        return format_html('<a href="{}?interaction={}">Sessions</a>', url, obj.pk)

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
                deadline_seconds=data.get("deadline_seconds"), layout=data.get("layout"),
                app=data.get("app"), access=data["access"], allowed_groups=data.get("allowed_groups") or [],
            )
        else:
            saved = services.interaction_create(
                user=self.owner_for(request, data.get("user")), name=data["name"],
                description=data["description"], tasks=data["tasks"], deadline_seconds=data.get("deadline_seconds"),
                layout=data.get("layout"), app=data.get("app"), access=data["access"],
                allowed_groups=data.get("allowed_groups") or [],
            )
        # The admin goes on with `obj` (messages, log entry, redirect): make it the saved row.
        for field in obj._meta.concrete_fields:
            setattr(obj, field.attname, getattr(saved, field.attname))
        obj._state.adding = False

    def delete_model(self, request, obj: Interaction) -> None:
        services.interaction_delete(interaction=obj)

    def delete_queryset(self, request, queryset) -> None:
        # The list's bulk delete too: the service first cancels active sessions (their workers stop).
        for interaction in queryset:
            services.interaction_delete(interaction=interaction)

    def _set_active(self, request, queryset, active: bool) -> None:
        changed = 0
        for interaction in queryset.filter(is_active=not active):
            services.interaction_set_active(interaction=interaction, active=active)
            changed += 1
        verb = "Activated" if active else "Deactivated"
        self.message_user(request, f"{verb} {changed} interaction(s).", messages.SUCCESS)

    @admin.action(description="Activate selected interactions", permissions=["change"])
    def activate(self, request, queryset) -> None:
        self._set_active(request, queryset, True)

    @admin.action(description="Deactivate selected interactions", permissions=["change"])
    def deactivate(self, request, queryset) -> None:
        self._set_active(request, queryset, False)

    # --- the change page's buttons and the version diff -----------------------------------

    def get_urls(self):
        own = [
            path("<path:object_id>/activate/", self.admin_site.admin_view(self.activate_view),
                 name="interactions_interaction_activate"),
            path("<path:object_id>/deactivate/", self.admin_site.admin_view(self.deactivate_view),
                 name="interactions_interaction_deactivate"),
            path("<path:object_id>/versions/diff/", self.admin_site.admin_view(self.version_diff_view),
                 name="interactions_interaction_version_diff"),
        ]
        return own + super().get_urls()

    def _owned(self, request: HttpRequest, object_id: str) -> Interaction:
        interaction = self.get_object(request, unquote(object_id))
        if interaction is None:
            raise Http404("No such interaction.")  # another builder's, as in the API
        return interaction

    def _activation(self, request: HttpRequest, object_id: str, active: bool) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        interaction = self._owned(request, object_id)
        if not self.has_change_permission(request, interaction):
            raise PermissionDenied
        services.interaction_set_active(interaction=interaction, active=active)
        self.message_user(request, f"{interaction.name} is {'active' if active else 'inactive'}.", messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:interactions_interaction_change", args=[interaction.pk]))

    def activate_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return self._activation(request, object_id, True)

    def deactivate_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return self._activation(request, object_id, False)

    def version_diff_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Show what changed between two versions (`?from=N&to=M`; default: the last two)."""
        interaction = self._owned(request, object_id)
        if not self.has_view_permission(request, interaction):
            raise PermissionDenied
        numbers = list(interaction.versions.order_by("number").values_list("number", flat=True))
        current = interaction.current_version.number if interaction.current_version else numbers[-1]

        def chosen(param: str, default: int) -> int:
            try:
                value = int(request.GET.get(param, default))
            except (TypeError, ValueError):
                return default
            return value if value in numbers else default

        to_number = chosen("to", current)
        from_number = chosen("from", max((n for n in numbers if n < to_number), default=to_number))
        versions = {v.number: v for v in interaction.versions.filter(number__in=[from_number, to_number])}
        older, newer = versions[from_number], versions[to_number]
        for version in (older, newer):
            version.interaction = interaction  # their __str__ names it: no query
        context = {
            **self.admin_site.each_context(request),
            "title": f"{interaction.name}: v{from_number} → v{to_number}",
            "opts": self.opts,
            "original": interaction,
            "numbers": numbers,
            "older": older,
            "newer": newer,
            "diff": version_diff(older=older, newer=newer),
            "media": self.media,
        }
        return TemplateResponse(request, "admin/interactions/interaction/version_diff.html", context)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        interaction = self.get_object(request, unquote(object_id))
        if interaction is not None:
            versions = list(interaction.versions.order_by("-number").only("id", "number", "created_at", "tasks"))
            for version in versions:
                version.interaction = interaction
            extra_context = {
                **(extra_context or {}),
                "junction_versions": [
                    {"number": v.number, "created_at": _when(v.created_at), "task_count": len(v.tasks or {}),
                     "tasks": ", ".join(sorted(v.tasks or {}))}
                    for v in versions
                ],
                "junction_sessions_url":
                    f"{reverse('admin:interactions_session_changelist')}?interaction={interaction.pk}",
                "junction_can_change": self.has_change_permission(request, interaction),
            }
        return super().change_view(request, object_id, form_url, extra_context)


# --- sessions -------------------------------------------------------------------------------

class InteractionListFilter(admin.SimpleListFilter):
    """Sessions of one interaction, chosen among those the admin user may see (`?interaction=<id>`)."""

    title = "interaction"
    parameter_name = "interaction"

    def lookups(self, request, model_admin):
        found = Interaction.objects.order_by("name").only("id", "name", "user__username").select_related("user")
        if not sees_everything(request):
            return [(str(pk), name) for pk, name in found.filter(user=request.user).values_list("pk", "name")]
        return [(str(i.pk), f"{i.name} ({i.user.username})") for i in found]

    def queryset(self, request, queryset):
        value = self.value()
        if not value:
            return queryset
        try:
            return queryset.filter(interaction_id=uuid.UUID(value))
        except ValueError:
            return queryset.none()  # not an id: no interaction has it


class TaskRunInline(admin.TabularInline):
    """A session's tasks: status, attempts, times to the millisecond, error, output. Read-only."""

    model = TaskRun
    extra = 0
    can_delete = False
    fields = readonly_fields = ("name", "status_badge", "attempts", "worker", "started", "finished", "duration", "error",
                                "output_json", "logs")
    ordering = ["started_at", "created_at", "name"]

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="Status")
    def status_badge(self, obj: TaskRun) -> str:
        return _status_badge(obj.status, obj.get_status_display())

    @admin.display(description="Started")
    def started(self, obj: TaskRun) -> str:
        return _when(obj.started_at, ms=True)

    @admin.display(description="Finished")
    def finished(self, obj: TaskRun) -> str:
        return _when(obj.finished_at, ms=True)

    @admin.display(description="Duration")
    def duration(self, obj: TaskRun) -> str:
        if obj.started_at and obj.finished_at is None and obj.status in TaskRun.TERMINAL:
            return "-"
        return _duration(obj.started_at, obj.finished_at)

    @admin.display(description="Output")
    def output_json(self, obj: TaskRun) -> str:
        return _pretty_json(obj.output, "12em")


@admin.register(Session)
class SessionAdmin(OwnerScopedAdmin):
    """Sessions are records: read-only, with cancel and retry as actions and as buttons."""

    inlines = [TaskRunInline]
    list_display = ["short_id", "interaction", "end_user", "version_number", "status_badge", "started", "duration",
                    "user"]
    list_display_links = ["short_id"]
    list_filter = [InteractionListFilter, "status", ("created_at", admin.DateFieldListFilter),
                   ("end_user", admin.EmptyFieldListFilter), "end_user__app"]
    search_fields = ["interaction__name", "user__username", "end_user__email"]  # and ids, by prefix
    list_select_related = ["interaction", "version", "user", "end_user"]
    # A count of every session on each page is a full scan of a table that only grows.
    show_full_result_count = False
    actions = ["cancel", "retry"]
    fields = readonly_fields = ("id", "user", "end_user", "interaction_link", "version_number", "status_badge",
                                "input_json", "result_json", "error", "created", "started_ms", "finished_ms",
                                "duration", "deadline", "resumes", "retry_of_link")
    Media = JunctionAdminMedia

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return request.method in ("GET", "HEAD") and super().has_change_permission(request, obj)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        # The page names the session after its interaction and shows its version number. (The
        # list's own select_related is skipped once the queryset has one: hence all of it here.)
        return super().get_queryset(request).select_related(*self.list_select_related)

    def get_search_results(self, request, queryset, search_term):
        """Also find sessions by the start of their id, as the list shows it (`0cd95879`).

        A prefix is a range of UUIDs, so the primary key's index answers it.
        """
        found, duplicates = super().get_search_results(request, queryset, search_term)
        prefix = search_term.strip().replace("-", "").lower()
        if not 4 <= len(prefix) <= 32 or any(c not in "0123456789abcdef" for c in prefix):
            return found, duplicates
        by_id = queryset.filter(id__gte=uuid.UUID(prefix.ljust(32, "0")))
        after = int(prefix, 16) + 1
        if after < 16 ** len(prefix):
            by_id = by_id.filter(id__lt=uuid.UUID(f"{after:0{len(prefix)}x}".ljust(32, "0")))
        return found | by_id, duplicates

    def has_operate_permission(self, request, obj=None) -> bool:
        """Cancel and retry: the model's change permission, whatever the request method."""
        return super().has_change_permission(request, obj)

    @admin.display(description="Session", ordering="created_at")
    def short_id(self, obj: Session) -> str:
        return str(obj.pk)[:8]

    @admin.display(description="Version", ordering="version__number")
    def version_number(self, obj: Session) -> int:
        return obj.version.number

    @admin.display(description="Status", ordering="status")
    def status_badge(self, obj: Session) -> str:
        return _status_badge(obj.status, obj.get_status_display())

    @admin.display(description="Started", ordering="started_at")
    def started(self, obj: Session) -> str:
        return _when(obj.started_at or obj.created_at)

    @admin.display(description="Duration")
    def duration(self, obj: Session) -> str:
        if obj.is_finished and obj.finished_at is None:
            return "-"
        return _duration(obj.started_at or obj.created_at, obj.finished_at)

    @admin.display(description="Interaction")
    def interaction_link(self, obj: Session) -> str:
        url = reverse("admin:interactions_interaction_change", args=[obj.interaction_id])
        return format_html('<a href="{}">{}</a>', url, obj.interaction.name)

    @admin.display(description="Input")
    def input_json(self, obj: Session) -> str:
        return _pretty_json(obj.input)

    @admin.display(description="Result")
    def result_json(self, obj: Session) -> str:
        return _pretty_json(obj.result)

    @admin.display(description="Created")
    def created(self, obj: Session) -> str:
        return _when(obj.created_at, ms=True)

    @admin.display(description="Started")
    def started_ms(self, obj: Session) -> str:
        return _when(obj.started_at, ms=True)

    @admin.display(description="Finished")
    def finished_ms(self, obj: Session) -> str:
        return _when(obj.finished_at, ms=True)

    @admin.display(description="Deadline")
    def deadline(self, obj: Session) -> str:
        return _when(obj.deadline_at)

    @admin.display(description="Retry of")
    def retry_of_link(self, obj: Session) -> str:
        if obj.retry_of_id is None:
            return "-"
        url = reverse("admin:interactions_session_change", args=[obj.retry_of_id])
        return format_html('<a href="{}">{}</a>', url, str(obj.retry_of_id)[:8])

    # --- cancel and retry ---------------------------------------------------------------

    def _cancel(self, request: HttpRequest, session: Session) -> bool:
        try:
            sessions.session_cancel(session=session)
        except DomainError as exc:
            self.message_user(request, f"{session}: {exc.message}", messages.WARNING)
            return False
        return True

    def _retry(self, request: HttpRequest, session: Session) -> Session | None:
        try:
            return sessions.session_retry(session=session)
        except DomainError as exc:  # inactive interaction (409), too many active sessions (429)
            self.message_user(request, f"{session}: {exc.message}", messages.WARNING)
            return None

    @admin.action(description="Cancel selected sessions", permissions=["operate"])
    def cancel(self, request, queryset) -> None:
        done = sum(self._cancel(request, session) for session in queryset)
        self.message_user(request, f"Cancelled {done} session(s).", messages.SUCCESS)

    @admin.action(description="Retry selected sessions (reusing completed outputs)", permissions=["operate"])
    def retry(self, request, queryset) -> None:
        started = [retry for session in queryset if (retry := self._retry(request, session)) is not None]
        self.message_user(request, f"Started {len(started)} retry session(s).", messages.SUCCESS)

    def get_urls(self):
        own = [
            path("<path:object_id>/cancel/", self.admin_site.admin_view(self.cancel_view),
                 name="interactions_session_cancel"),
            path("<path:object_id>/retry/", self.admin_site.admin_view(self.retry_view),
                 name="interactions_session_retry"),
        ]
        return own + super().get_urls()

    def _operated(self, request: HttpRequest, object_id: str) -> Session:
        session = self.get_object(request, unquote(object_id))
        if session is None:
            raise Http404("No such session.")  # another builder's, as in the API
        if not self.has_operate_permission(request, session):
            raise PermissionDenied
        return session

    def cancel_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        session = self._operated(request, object_id)
        if self._cancel(request, session):
            self.message_user(request, f"Cancelled {session}.", messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:interactions_session_change", args=[session.pk]))

    def retry_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        session = self._operated(request, object_id)
        retry = self._retry(request, session)
        if retry is None:
            return HttpResponseRedirect(reverse("admin:interactions_session_change", args=[session.pk]))
        self.message_user(request, f"Started {str(retry.pk)[:8]}, a retry of {str(session.pk)[:8]}.", messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:interactions_session_change", args=[retry.pk]))

    def change_view(self, request, object_id, form_url="", extra_context=None):
        session = self.get_object(request, unquote(object_id))
        if session is not None:
            extra_context = {
                **(extra_context or {}),
                "junction_can_operate": self.has_operate_permission(request, session),
                "junction_is_finished": session.is_finished,
                # A record: nothing to save (cancel and retry are the buttons above).
                "show_save": False,
                "show_save_and_continue": False,
                "show_save_and_add_another": False,
            }
        return super().change_view(request, object_id, form_url, extra_context)
