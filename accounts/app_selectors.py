"""Reads for apps and their end users."""
from __future__ import annotations

from django.db.models import QuerySet
from config.errors import NotFound

from accounts.models import App, EndUser, Invitation, User


def app_list(*, owner: User) -> QuerySet[App]:
    return App.objects.filter(owner=owner).prefetch_related("groups")


def app_by_slug(*, slug: str) -> App:
    """The app whose end-user routes are `/api/apps/{slug}/…`; NotFound (404) when there is none."""
    app = App.objects.filter(slug=slug).first()
    if app is None:
        raise NotFound(f"No app {slug!r}.")
    return app


def end_user_list(*, app: App) -> QuerySet[EndUser]:
    return EndUser.objects.filter(app=app).select_related("group", "app")


def invitation_list(*, app: App) -> QuerySet[Invitation]:
    return Invitation.objects.filter(app=app)
