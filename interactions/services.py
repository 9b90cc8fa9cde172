"""Writes for interactions: create, update (a new version when the tasks change), activate."""
from __future__ import annotations

from typing import Any, cast

from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import App, AppGroup, User
from config.errors import InvalidInput
from integrations.selectors import integration_providers
from config.bounds import definition_limits
from interactions.engine.definition import Definition, DefinitionInvalid, parse_definition
from interactions.models import Interaction, InteractionVersion, Session
from interactions.sessions import session_end
from interactions.statuses import SESSION_ACTIVE
from tasks_catalog.registry import find_task_type


def definition_parse(*, user: User, tasks: Any, access: str = Interaction.Access.OWNER) -> Definition:
    """Validate a definition for `user`; raise InvalidInput with every problem named.

    When `access` is not `owner`, a task may leave its integration out (the calling end user's
    own is used at run time, docs/end-users.md).
    """
    ids = set()
    if isinstance(tasks, dict):
        ids = {str(t["integration"]) for t in tasks.values() if isinstance(t, dict) and t.get("integration")}
    try:
        return parse_definition(
            tasks,
            task_type=find_task_type,
            integrations=integration_providers(user=user, ids=ids) if ids else {},
            limits=definition_limits(),
            caller_integrations=access != Interaction.Access.OWNER,
        )
    except DefinitionInvalid as exc:
        raise InvalidInput(details=exc.errors) from None


UNCHANGED = object()  # for fields where None is a value


def access_check(*, user: User, app: Any, access: str, allowed_groups: list[str]) -> App | None:
    """Check who may run an interaction of `user` (the admin's form asks before saving); return
    the app. Raises InvalidInput naming `app`, `access` or `allowed_groups`."""
    return _access(user=user, app=app, access=access, allowed_groups=list(dict.fromkeys(allowed_groups)))


def _access(*, user: User, app: Any, access: str, allowed_groups: list[str]) -> App | None:
    """Check who may run an interaction; return the app (None for none).

    `app` is an App or an app id of the user's; `access` other than `owner` needs an app;
    `allowed_groups` must be groups of the app. Raises InvalidInput naming the field.
    """
    found = None
    if app is not None:
        found = app if isinstance(app, App) else App.objects.filter(owner=user, pk=app).first()
        if found is None or found.owner_id != user.pk:
            raise InvalidInput(details={"app": [f"Unknown app {app}."]})
    if access != Interaction.Access.OWNER and found is None:
        raise InvalidInput(details={"access": [f"Access {access!r} needs an app: set `app` (its end users log in there)."]})
    if allowed_groups:
        if found is None:
            raise InvalidInput(details={"allowed_groups": ["Groups need an app."]})
        known = set(AppGroup.objects.filter(app=found).values_list("name", flat=True))
        unknown = [name for name in allowed_groups if name not in known]
        if unknown:
            raise InvalidInput(details={"allowed_groups": [f"Unknown group {name!r} of app {found.slug!r}." for name in unknown]})
    return found


def _save(interaction: Interaction) -> None:
    try:
        with transaction.atomic():
            interaction.save()
    except IntegrityError:
        raise InvalidInput(details={"name": ["You already have an interaction with this name."]}) from None


def layout_clean(*, layout: Any, tasks: Any) -> dict[str, dict[str, float]]:
    """Keep the canvas positions of tasks that exist; drop anything else (it is presentation only)."""
    if not isinstance(layout, dict) or not isinstance(tasks, dict):
        return {}
    kept: dict[str, dict[str, float]] = {}
    for name, point in layout.items():
        if name in tasks and isinstance(point, dict):
            x, y = point.get("x"), point.get("y")
            if all(isinstance(v, (int, float)) and not isinstance(v, bool) and abs(v) < 1e7 for v in (x, y)):
                kept[name] = {"x": round(float(x), 1), "y": round(float(y), 1)}  # type: ignore[arg-type]  # numbers, checked above
    return kept


def _add_version(interaction: Interaction, tasks: dict[str, Any], layout: Any = None) -> InteractionVersion:
    last = interaction.current_version.number if interaction.current_version else 0
    version = InteractionVersion.objects.create(
        interaction=interaction, number=last + 1, tasks=tasks, layout=layout_clean(layout=layout, tasks=tasks)
    )
    interaction.current_version = version
    return version


@transaction.atomic
def interaction_create(
    *, user: User, name: str, tasks: Any, description: str = "", deadline_seconds: int | None = None,
    app: Any = None, access: str = Interaction.Access.OWNER, allowed_groups: list[str] | None = None,
    layout: Any = None,
) -> Interaction:
    """Create an interaction and its version 1 (inactive until activated).

    `layout` is the canvas's positions of the tasks, kept with the version (docs/ui.md).
    """
    allowed_groups = list(dict.fromkeys(allowed_groups or []))
    found = _access(user=user, app=app, access=access, allowed_groups=allowed_groups)
    definition_parse(user=user, tasks=tasks, access=access)
    interaction = Interaction(user=user, name=name, description=description, deadline_seconds=deadline_seconds,
                              app=found, access=access, allowed_groups=allowed_groups)
    _save(interaction)
    _add_version(interaction, tasks, layout)
    interaction.save(update_fields=["current_version", "updated_at"])
    return interaction


@transaction.atomic
def interaction_update(
    *,
    interaction: Interaction,
    name: str | None = None,
    description: str | None = None,
    tasks: Any = None,
    is_active: bool | None = None,
    deadline_seconds: int | None | object = UNCHANGED,
    app: Any = UNCHANGED,
    access: str | None = None,
    allowed_groups: list[str] | None = None,
    layout: Any = None,
) -> Interaction:
    """Change an interaction; a change to `tasks` adds a new version, other fields do not
    (`app`, `access`, `allowed_groups` are settings, like `is_active`).

    `layout` (the canvas's positions) goes with a new version; with unchanged tasks it replaces
    the current version's layout in place, since positions are not part of what runs.

    Locks the interaction row so that concurrent edits number their versions in turn. A
    change of access is refused (400) when the current tasks would not be valid under it
    (e.g. back to `owner` while a task leaves its integration out).
    """
    interaction = (
        Interaction.objects.select_for_update(of=("self",)).select_related("current_version").get(pk=interaction.pk)
    )
    who = (app, access, allowed_groups)
    if who != (UNCHANGED, None, None):
        interaction.access = access if access is not None else interaction.access
        if allowed_groups is not None:
            interaction.allowed_groups = list(dict.fromkeys(allowed_groups))
        interaction.app = _access(
            user=interaction.user, app=interaction.app_id if app is UNCHANGED else app,
            access=interaction.access, allowed_groups=interaction.allowed_groups,
        )
    if tasks is not None or access is not None:
        assert tasks is not None or interaction.current_version is not None  # created with its version 1
        checked = tasks if tasks is not None else interaction.current_version.tasks  # type: ignore[union-attr]
        definition_parse(user=interaction.user, tasks=checked, access=interaction.access)
    if tasks is not None:
        if interaction.current_version is None or interaction.current_version.tasks != tasks:
            _add_version(interaction, tasks, layout)
        elif layout is not None:
            kept = layout_clean(layout=layout, tasks=tasks)
            if kept != interaction.current_version.layout:
                InteractionVersion.objects.filter(pk=interaction.current_version.pk).update(layout=kept)
                interaction.current_version.layout = kept
    if name is not None:
        interaction.name = name
    if description is not None:
        interaction.description = description
    if is_active is not None:
        interaction.is_active = is_active
    if deadline_seconds is not UNCHANGED:
        interaction.deadline_seconds = cast("int | None", deadline_seconds)  # None: back to the server's default
    _save(interaction)
    return interaction


def interaction_set_active(*, interaction: Interaction, active: bool) -> Interaction:
    return interaction_update(interaction=interaction, is_active=active)


@transaction.atomic
def interaction_delete(*, interaction: Interaction) -> None:
    """Delete an interaction with its versions and its sessions (history included).

    Its sessions still queued or running are first cancelled, their running tasks revoked, so
    no worker keeps working for a session that no longer exists. Locks the interaction, so a
    run that starts meanwhile either finishes creating its session first (and is cancelled
    here) or finds the interaction gone (404).
    """
    locked = Interaction.objects.select_for_update().get(pk=interaction.pk)
    active = Session.objects.select_for_update().filter(interaction=locked, status__in=SESSION_ACTIVE)
    now = timezone.now()
    for session in active:
        session_end(session=session, status=Session.Status.CANCELLED,
                    error="cancelled: the interaction was deleted", now=now)
    locked.delete()
