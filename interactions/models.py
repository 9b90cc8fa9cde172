from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from accounts.models import TimeStampedModel
from interactions.statuses import SESSION_TERMINAL, TASK_TERMINAL, SessionStatus, TaskStatus, choices

# TaskRun.worker: a Celery node name (`name@hostname`); longer ones are cut (runstore.worker_name).
WORKER_MAX_LENGTH = 255
# The hard maximum of JUNCTION_MAX_SESSION_DEADLINE (30 days): what an interaction may ever ask
# for, whatever the setting. The setting (default one day) is checked by the API.
MAX_SESSION_DEADLINE = 30 * 86400


class Interaction(TimeStampedModel):
    """A user's workflow. Its definition lives in immutable versions; the id (and so the
    endpoint URL) never changes.

    `app`, `access` and `allowed_groups` say who may run it (docs/end-users.md). They are
    settings, like `is_active`: changing them makes no new version and applies to the next call.
    """

    class Access(models.TextChoices):
        OWNER = "owner", "Owner: only the builder (JWT or API key)"
        END_USERS = "end_users", "End users: the app's end users (of the allowed groups)"
        PUBLIC = "public", "Public: anyone, without credentials (rate-limited per address)"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="interactions")
    app = models.ForeignKey("accounts.App", on_delete=models.SET_NULL, null=True, blank=True,
                            related_name="interactions")
    access = models.CharField(max_length=16, choices=Access.choices, default=Access.OWNER)
    allowed_groups = models.JSONField(
        default=list, blank=True, help_text="Group names of the app admitted when access is end_users; empty: all.",
    )
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True, default="")
    is_active = models.BooleanField(default=False)
    deadline_seconds = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(MAX_SESSION_DEADLINE)],
        help_text="A session still running this long after it started ends as timed_out "
        "(default: JUNCTION_SESSION_DEADLINE).",
    )
    current_version = models.ForeignKey(
        "InteractionVersion", on_delete=models.SET_NULL, related_name="+", null=True, blank=True
    )

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["user", "name"], name="interaction_name_unique_per_user"),
            models.CheckConstraint(condition=models.Q(access="owner") | models.Q(app__isnull=False),
                                   name="interaction_open_access_needs_app"),
        ]

    def __str__(self) -> str:
        return self.name


class InteractionVersion(TimeStampedModel):
    """One immutable definition of an interaction: sessions run a version, never the
    interaction's moving head."""

    interaction = models.ForeignKey(Interaction, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    tasks = models.JSONField()
    # Where the canvas drew each task ({task: {"x", "y"}}): presentation only, never validated
    # or executed, so it may change without making a new version (docs/ui.md).
    layout = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-number"]
        constraints = [
            models.UniqueConstraint(fields=["interaction", "number"], name="version_number_unique"),
            models.CheckConstraint(condition=models.Q(number__gte=1), name="version_number_positive"),
        ]

    def __str__(self) -> str:
        # Named after the interaction only when it is loaded: a name never costs a query (a
        # delete confirmation lists every version and session of an interaction).
        if InteractionVersion.interaction.is_cached(self):
            return f"{self.interaction.name} v{self.number}"
        return f"v{self.number}"


class Session(TimeStampedModel):
    """One call of an interaction: the version it runs, the caller's input, the outcome."""

    Status = SessionStatus
    TERMINAL = SESSION_TERMINAL

    # The FKs without an index of their own are served by the indexes of Meta (user, end user:
    # with created_at; retry_of: only the sessions that are retries).
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="sessions",
                             db_index=False)
    # The end user who called (null: the builder, or an anonymous call of a public interaction).
    # SET_NULL: the builder's history outlives a deleted end user.
    end_user = models.ForeignKey("accounts.EndUser", on_delete=models.SET_NULL, null=True, blank=True,
                                 related_name="sessions", db_index=False)
    interaction = models.ForeignKey(Interaction, on_delete=models.CASCADE, related_name="sessions")
    # RESTRICT, not PROTECT: a version cannot be deleted from under its sessions, but deleting
    # the interaction (or its user) deletes both together (docs/execution.md, "Deleting").
    version = models.ForeignKey(InteractionVersion, on_delete=models.RESTRICT, related_name="sessions")
    status = models.CharField(max_length=16, choices=choices(SessionStatus), default=SessionStatus.QUEUED)
    input = models.JSONField(default=dict, blank=True)
    result = models.JSONField(null=True, blank=True)
    error = models.TextField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    deadline_at = models.DateTimeField(null=True, blank=True)
    resumes = models.PositiveIntegerField(default=0, help_text="How often the sweeper resumed it.")
    size_bytes = models.PositiveBigIntegerField(default=0, help_text="Input plus recorded outputs.")
    retry_of = models.ForeignKey("self", on_delete=models.SET_NULL, null=True, blank=True, related_name="+",
                                 db_index=False)
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)
    request_hash = models.CharField(max_length=64, blank=True, default="")

    class Meta:
        ordering = ["-created_at"]
        # No index holds `updated_at` or `size_bytes`, which every step of a session writes: those
        # updates stay heap-only (HOT), touching no index (docs/execution.md, "What a step
        # writes"). The sweeper and the metrics read the active sessions through
        # `session_active_by_user`; retention reads `session_finished`.
        indexes = [
            models.Index(fields=["user", "-created_at"]),
            models.Index(fields=["end_user", "-created_at"]),
            models.Index(fields=["finished_at"], condition=models.Q(finished_at__isnull=False),
                         name="session_finished"),
            models.Index(fields=["retry_of"], condition=models.Q(retry_of__isnull=False), name="session_retries"),
            # The active-session limit counts a user's queued and running sessions on every
            # call (runstore.insert_session): only those are in this index, however many
            # finished sessions the user has.
            models.Index(fields=["user"], condition=models.Q(status__in=["queued", "running"]),
                         name="session_active_by_user"),
        ]
        # An Idempotency-Key belongs to its caller: the builder, or one end user.
        constraints = [
            models.UniqueConstraint(
                fields=["user", "interaction", "idempotency_key"],
                condition=models.Q(idempotency_key__isnull=False, end_user__isnull=True),
                name="session_idempotency_key_unique",
            ),
            models.UniqueConstraint(
                fields=["end_user", "interaction", "idempotency_key"],
                condition=models.Q(idempotency_key__isnull=False, end_user__isnull=False),
                name="session_end_user_idempotency_key_unique",
            ),
        ]

    def __str__(self) -> str:
        # The id's first block is what people quote. The interaction's name only when it is
        # loaded (the admin's lists select it): a name never costs a query.
        short = f"{str(self.pk)[:8]} ({self.status})"
        if Session.interaction.is_cached(self):
            return f"{self.interaction.name} · {short}"
        return f"session {short}"

    @property
    def is_finished(self) -> bool:
        return self.status in self.TERMINAL


class TaskRun(TimeStampedModel):
    """A task's record inside a session (not called `Task`: that is Celery's word)."""

    Status = TaskStatus
    TERMINAL = tuple(TASK_TERMINAL)

    # No index of its own: the unique (session, name) constraint's index serves every lookup by
    # session, and one index fewer is less work for each record written.
    session = models.ForeignKey(Session, on_delete=models.CASCADE, related_name="task_runs", db_index=False)
    name = models.CharField(max_length=64)
    status = models.CharField(max_length=16, choices=choices(TaskStatus), default=TaskStatus.PENDING)
    output = models.JSONField(null=True, blank=True)
    error = models.TextField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    # While running: the claim is valid until then. A later delivery may take the task over
    # only once the lease has run out (its worker died).
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # What a `code` task printed (stdout and stderr, the last JUNCTION_CODE_MAX_LOG_BYTES
    # characters); empty for other types. Beside the output, which stays what main() returned.
    # A database default, so that rows inserted with raw SQL (interactions/runstore.py) need not
    # name it.
    logs = models.TextField(blank=True, default="", db_default="")
    # Where the task ran (docs/multi-host.md): the Celery node name of the worker holding its
    # claim (`celery@host-b`; a take-over replaces it, a delay names the worker that ended it),
    # or `api@<hostname>` for a task run by the process that took the call. Empty: never ran.
    # Written by the statement that claims the task (interactions/runstore.py).
    worker = models.CharField(max_length=WORKER_MAX_LENGTH, blank=True, default="", db_default="")

    class Meta:
        ordering = ["session", "created_at", "name"]
        constraints = [
            models.UniqueConstraint(fields=["session", "name"], name="task_run_unique_per_session"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.status})"
