"""Reads for interactions."""
from __future__ import annotations

import json
import uuid
from typing import Any

from django.db.models import Prefetch, QuerySet

from accounts.models import User
from config.hotcache import HotCache
from config.timestamps import iso_timestamp
from interactions.compiled import compiled_version
from interactions.engine.definition import Definition
from interactions.engine.inputs import example_input, input_schema
from interactions.models import Interaction, InteractionVersion, Session, TaskRun
from interactions.signals import INTERACTIONS
from tasks_catalog.headers import sendable_headers


def interaction_list(*, user: User) -> QuerySet[Interaction]:
    return Interaction.objects.filter(user=user).select_related("current_version")


# The interactions run calls look up, per process (config/hotcache.py; interactions.signals
# announces every change).
_for_run: HotCache = HotCache(INTERACTIONS)


def interaction_for_run(*, pk: Any, user: User) -> Interaction | None:
    """The user's interaction `pk` with its current version (its JSON deferred: the compiled
    version is cached per process), or None. Usually no query at all."""
    try:
        key = str(uuid.UUID(str(pk)))
    except ValueError:
        return None
    found = _for_run.get(key)
    if found is None:
        ticket = _for_run.ticket()
        found = (Interaction.objects.select_related("current_version").defer("current_version__tasks")
                 .filter(pk=key).first())
        if found is None:
            return None
        _for_run.put(key, found, ticket)
    return found if found.user_id == user.pk else None


def version_list(*, interaction: Interaction) -> QuerySet[InteractionVersion]:
    return interaction.versions.all()


def version_definition(*, version: InteractionVersion) -> Definition:
    """Parse a stored version (validated when saved; integrations are not re-checked)."""
    return compiled_version(version.id, version.tasks).definition


def _authentication(interaction: Interaction, login_url: str | None) -> tuple[dict[str, Any], dict[str, str], str]:
    """How a caller of `interaction` authenticates: the description, the headers, the curl option."""
    access = interaction.access
    if access == Interaction.Access.END_USERS:
        return ({
            "scheme": "end_user_jwt",
            "description": "An end user of the app logs in at `login_url` ({email, password}) and sends the "
                           "access token it answers. A builder's JWT or API key still works for the owner.",
            "login_url": login_url,
            "allowed_groups": list(interaction.allowed_groups) or "all",
            "header": "Authorization: Bearer <end user's access token>",
        }, {"Authorization": "Bearer <end user's access token>"}, "-H 'Authorization: Bearer <end user access token>' ")
    if access == Interaction.Access.PUBLIC:
        return ({
            "scheme": "none",
            "description": "No credentials: anyone may call it, rate-limited per client address "
                           "(JUNCTION_THROTTLE_PUBLIC_RUN). An end user of the app may send their token "
                           "(`login_url`) to run it with their own integrations.",
            "login_url": login_url,
            "header": None,
        }, {}, "")
    return ({
        "scheme": "builder",
        "description": "Only you: your JWT (POST /api/auth/login/) or an API key (POST /api/auth/api-keys/).",
        "header": "Authorization: Api-Key <key>",
    }, {"Authorization": "Bearer <access token> (or: Api-Key <key>)"}, "-H 'Authorization: Api-Key <key>' ")


def interaction_endpoint(*, interaction: Interaction, run_url: str, login_url: str | None = None) -> dict[str, Any]:
    """Describe how to call the interaction: who may and how they authenticate, example body, its
    JSON Schema and a curl line."""
    assert interaction.current_version is not None  # every interaction is created with its version 1
    definition = version_definition(version=interaction.current_version)
    body = example_input(definition.blanks)
    authentication, auth_headers, curl_auth = _authentication(interaction, login_url)
    headers = {**auth_headers, "Content-Type": "application/json"}
    payload = json.dumps(body).replace("'", "'\\''")
    curl = (
        f"curl -X POST '{run_url}' {curl_auth}"
        f"-H 'Content-Type: application/json' -d '{payload}'"
    )
    return {
        "method": "POST",
        "url": run_url,
        "access": interaction.access,
        "authentication": authentication,
        "headers": headers,
        "body": body,
        "schema": input_schema(definition.blanks),
        "curl": curl,
    }


def session_list(*, user: User) -> QuerySet[Session]:
    return Session.objects.filter(user=user).select_related("version").prefetch_related(
        Prefetch("task_runs", queryset=TaskRun.objects.order_by("created_at", "name"))
    )


def end_user_session_list(*, end_user) -> QuerySet[Session]:
    """The sessions an end user started (of their app's interactions), nothing else."""
    return Session.objects.filter(end_user=end_user).select_related("version").prefetch_related(
        Prefetch("task_runs", queryset=TaskRun.objects.order_by("created_at", "name"))
    )


def interaction_to_run(*, pk, access: tuple[str, ...]) -> Interaction | None:
    """The interaction `pk` if its access is one of `access`, with its owner (one query), for
    callers that are not its builder (end users, anonymous). The definition's JSON is not read:
    the compiled version is cached per process."""
    return (Interaction.objects.filter(pk=pk, access__in=access).select_related("current_version", "user")
            .defer("current_version__tasks").first())


def session_by_id(*, session_id) -> Session:
    """The session with what `session_data` renders (for code that holds no user, e.g. events)."""
    return Session.objects.select_related("version").prefetch_related(
        Prefetch("task_runs", queryset=TaskRun.objects.order_by("created_at", "name"))
    ).get(pk=session_id)


def _ms(start, end) -> int | None:
    return int((end - start).total_seconds() * 1000) if start and end else None


def task_data(*, status, output, error, attempts, started_at, finished_at, logs: str = "",
              worker: str = "") -> dict[str, Any]:
    """Render one task's record as the API shows it (SPEC §2.6), plus `logs` when the task printed.

    `worker`: where it ran (the Celery node name, or `api@<host>` for the process that took the
    call; docs/multi-host.md), null while it never ran.
    """
    data = {
        "status": status,
        "output": output,
        "error": error,
        "attempts": attempts,
        "started_at": iso_timestamp(started_at),
        "finished_at": iso_timestamp(finished_at),
        "duration_ms": _ms(started_at, finished_at),
        "worker": worker or None,
    }
    if logs:
        data["logs"] = logs
    return data


def task_run_data(run: TaskRun) -> dict[str, Any]:
    return {"name": run.name, **task_data(
        status=run.status, output=run.output, error=run.error, attempts=run.attempts,
        started_at=run.started_at, finished_at=run.finished_at, logs=run.logs, worker=run.worker,
    )}


def session_data_from(
    *, id, interaction_id, end_user_id=None, version: int, status: str, input, result, error, created_at, started_at, finished_at,
    tasks: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    """Render a session from plain values (what the process that ended it holds in memory)."""
    return {
        "id": str(id),
        "interaction": str(interaction_id),
        "end_user": str(end_user_id) if end_user_id else None,
        "version": version,
        "status": status,
        "input": input,
        "result": result,
        "error": error,
        "created_at": iso_timestamp(created_at),
        "started_at": iso_timestamp(started_at),
        "finished_at": iso_timestamp(finished_at),
        "duration_ms": _ms(started_at or created_at, finished_at),
        "tasks": tasks,
    }


def session_data(session: Session) -> dict[str, Any]:
    """Render a session as the API shows it (SPEC §2.6)."""
    return session_data_from(
        id=session.id, interaction_id=session.interaction_id, end_user_id=session.end_user_id,
        version=session.version.number,
        status=session.status, input=session.input, result=session.result, error=session.error,
        created_at=session.created_at, started_at=session.started_at, finished_at=session.finished_at,
        tasks={run.name: {k: v for k, v in task_run_data(run).items() if k != "name"} for run in session.task_runs.all()},
    )


def reply_tasks(*, version_id) -> list[str]:
    """Names of the version's replying (`response`) tasks, in the order that picks the reply (by name)."""
    definition = compiled_version(version_id).definition
    return [name for name in sorted(definition.tasks) if definition.tasks[name].replies]


def reply_from_data(data: dict[str, Any], reply_names: list[str]) -> dict[str, Any] | None:
    """Return the first completed `response` task's output in a session's representation."""
    for name in reply_names:
        task = data["tasks"].get(name)
        if task and task["status"] == TaskRun.Status.COMPLETED:
            # The first by name, as for the session's result. Its headers were checked when
            # the task ran; `sendable_headers` is the backstop for outputs recorded before.
            reply = task["output"]
            return {**reply, "headers": sendable_headers(reply.get("headers"))}
    return None


def session_reply(session: Session) -> dict[str, Any] | None:
    """Return the completed `response` task's output (status_code, headers, body), if any."""
    return reply_from_data(session_data(session), reply_tasks(version_id=session.version_id))
