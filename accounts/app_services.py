"""Writes for apps and their end users: apps and groups, sign-up, tokens, invitations.

Decisions are in docs/end-users.md. Raises InvalidInput naming the field for bad input,
Forbidden (403) for a refused sign-up, Conflict (409) for a group still in use, and
Unauthenticated (401) for bad credentials or tokens (config/errors.py).
"""
from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone
from rest_framework_simplejwt.exceptions import TokenError

from accounts import enduser_tokens
from accounts.enduser_tokens import APP_CLAIM, END_USER_CLAIM, TOKEN_VERSION_CLAIM, EndUserRefreshToken
from accounts.models import GROUP_PATTERN, SLUG_PATTERN, App, AppGroup, EndUser, Invitation, User
from config.errors import Conflict, Forbidden, InvalidInput, Unauthenticated

DEFAULT_GROUP = "users"
INVITATION_PREFIX = "ji_"


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _normal_email(email: str) -> str:
    return email.strip().lower()


# --- apps and groups ------------------------------------------------------------------------

def _check_slug(slug: str, *, app: App | None = None) -> None:
    if not re.match(SLUG_PATTERN, slug):
        raise InvalidInput(details={"slug": ["Lower-case letters, digits and hyphens, 1-50 characters, "
                                        "not starting or ending with a hyphen."]})
    taken = App.objects.filter(slug=slug)
    if app is not None:
        taken = taken.exclude(pk=app.pk)
    if taken.exists():
        raise InvalidInput(details={"slug": ["An app with this slug already exists."]})


def _group_plan(groups: list[str] | None, default_group: str | None, current: str | None = None) -> tuple[list[str], str]:
    """The group names and the default one an app should have (SPEC §2.7: `users` by default)."""
    names = list(dict.fromkeys(groups)) if groups is not None else []
    for name in names:
        if not re.match(GROUP_PATTERN, name):
            raise InvalidInput(details={"groups": [f"Bad group name {name!r}: letters, digits, '_', '.', '-', 1-50 characters."]})
    default = default_group or current or DEFAULT_GROUP
    if default_group is not None and groups is not None and default_group not in names:
        raise InvalidInput(details={"default_group": [f"{default_group!r} is not one of the groups."]})
    if default not in names:
        names.append(default)
    return names, default


def _groups_in_use(app: App, names: set[str]) -> dict[str, list[str]]:
    """For each of `names`, why it cannot be deleted (end users in it, interactions admitting it)."""
    from interactions.models import Interaction  # accounts is below interactions

    reasons: dict[str, list[str]] = {}
    for name in (AppGroup.objects.filter(app=app, name__in=names, end_users__isnull=False)
                 .values_list("name", flat=True).distinct()):
        reasons[name] = ["it has end users"]
    for interaction_name, allowed in Interaction.objects.filter(app=app).values_list("name", "allowed_groups"):
        for name in set(allowed or []) & names:
            reasons.setdefault(name, []).append(f"interaction {interaction_name!r} admits it")
    return reasons


def _set_groups(app: App, names: list[str], default: str) -> None:
    existing = {group.name: group for group in AppGroup.objects.filter(app=app)}
    gone = set(existing) - set(names)
    if gone:
        blocked = _groups_in_use(app, gone)
        if blocked:
            raise Conflict(
                "A group still in use cannot be removed: move its end users and change the interactions first.",
                code="group_in_use", details={f"groups.{name}": why for name, why in sorted(blocked.items())},
            )
        AppGroup.objects.filter(app=app, name__in=gone).delete()
    AppGroup.objects.filter(app=app, is_default=True).exclude(name=default).update(is_default=False)
    for name in names:
        if name not in existing:
            AppGroup.objects.create(app=app, name=name, is_default=name == default)
    AppGroup.objects.filter(app=app, name=default, is_default=False).update(is_default=True)


def _save_app(app: App) -> None:
    try:
        with transaction.atomic():
            app.save()
    except IntegrityError:
        raise InvalidInput(details={"slug": ["An app with this slug already exists."]}) from None


@transaction.atomic
def app_create(*, owner: User, name: str, slug: str, signup: str = App.Signup.INVITE,
               groups: list[str] | None = None, default_group: str | None = None) -> App:
    """Create an app with its groups; `users` is created and made the default when no default is given."""
    _check_slug(slug)
    names, default = _group_plan(groups, default_group)
    app = App(owner=owner, name=name, slug=slug, signup=signup)
    _save_app(app)
    _set_groups(app, names, default)
    return app


@transaction.atomic
def app_update(*, app: App, name: str | None = None, slug: str | None = None, signup: str | None = None,
               groups: list[str] | None = None, default_group: str | None = None) -> App:
    """Change an app. `groups` replaces the set of groups (409 `group_in_use` for a group removed
    that still has end users or is admitted by an interaction)."""
    app = App.objects.select_for_update().get(pk=app.pk)
    if slug is not None and slug != app.slug:
        _check_slug(slug, app=app)
        app.slug = slug
    if name is not None:
        app.name = name
    if signup is not None:
        app.signup = signup
    if groups is not None or default_group is not None:
        current = list(AppGroup.objects.filter(app=app).values_list("name", flat=True))
        current_default = AppGroup.objects.filter(app=app, is_default=True).values_list("name", flat=True).first()
        if groups is None and default_group not in current:
            raise InvalidInput(details={"default_group": [f"{default_group!r} is not one of the groups."]})
        names, default = _group_plan(groups if groups is not None else current, default_group, current_default)
        _set_groups(app, names, default)
    _save_app(app)
    return app


@transaction.atomic
def app_delete(*, app: App) -> None:
    """Delete an app with its groups, end users (their integrations) and invitations.

    Its interactions stay, back to `access: owner` (only the builder may run them), and the
    sessions end users started stay in the builder's history without their end user.
    """
    from interactions.models import Interaction

    Interaction.objects.filter(app=app).update(app=None, access="owner", allowed_groups=[], updated_at=timezone.now())
    app.delete()


def group_get(*, app: App, name: str) -> AppGroup:
    group = AppGroup.objects.filter(app=app, name=name).first()
    if group is None:
        raise InvalidInput(details={"group": [f"Unknown group {name!r} of app {app.slug!r}."]})
    return group


# --- end users ------------------------------------------------------------------------------

def _invitation_for(app: App, token: str | None, email: str) -> Invitation | None:
    if not token:
        return None
    found = Invitation.objects.select_for_update().filter(app=app, hashed_token=_hash(token)).first()
    if found is None or found.used_at is not None or found.expires_at <= timezone.now():
        raise Forbidden("The invitation is unknown, used or expired.", code="invitation_invalid", details={"invitation": ["Unknown, used or expired."]})
    if _normal_email(found.email) != email:
        raise Forbidden("The invitation was made for another e-mail address.", code="invitation_invalid", details={"invitation": ["Made for another address."]})
    return found


@transaction.atomic
def end_user_register(*, app: App, email: str, password: str, invitation: str | None = None) -> EndUser:
    """Register an end user in the app's default group, as its sign-up policy allows.

    Closed: 403 `signup_closed`. Invite-only: 403 `invitation_required` without an invitation,
    `invitation_invalid` for one unknown, used, expired or made for another address. An
    invitation is used up by the registration it admits (also in an open app).
    """
    email = _normal_email(email)
    if app.signup == App.Signup.CLOSED:
        raise Forbidden("Sign-up is closed for this app.", code="signup_closed")
    if app.signup == App.Signup.INVITE and not invitation:
        raise Forbidden("This app is invite-only: register with an invitation.", code="invitation_required", details={"invitation": ["Required."]})
    found = _invitation_for(app, invitation, email)
    if EndUser.objects.filter(app=app, email=email).exists():
        raise InvalidInput(details={"email": ["An account with this e-mail already exists in this app."]})
    end_user = EndUser(app=app, email=email, group=AppGroup.objects.get(app=app, is_default=True))
    try:
        validate_password(password, user=end_user)  # type: ignore[arg-type]  # validators read attributes
    except DjangoValidationError as exc:
        raise InvalidInput(details={"password": list(exc.messages)}) from None
    end_user.set_password(password)
    try:
        with transaction.atomic():
            end_user.save()
    except IntegrityError:
        raise InvalidInput(details={"email": ["An account with this e-mail already exists in this app."]}) from None
    if found is not None:
        found.used_at, found.used_by = timezone.now(), end_user
        found.save(update_fields=["used_at", "used_by", "updated_at"])
    return end_user


def end_user_login(*, app: App, email: str, password: str) -> dict[str, str]:
    """Check an end user's credentials; return a token pair. Raises Unauthenticated (401)."""
    end_user = EndUser.objects.select_related("group").filter(app=app, email=_normal_email(email)).first()
    if end_user is None:
        EndUser().set_password(password)  # as long as a real check: no timing hint of who exists
        raise Unauthenticated("No active account found with the given credentials.", code="no_active_account")
    if not end_user.check_password(password) or not end_user.is_active:
        raise Unauthenticated("No active account found with the given credentials.", code="no_active_account")
    EndUser.objects.filter(pk=end_user.pk).update(last_login_at=timezone.now())
    return enduser_tokens.token_pair(end_user=end_user)


def _refresh_token(raw: str) -> EndUserRefreshToken:
    try:
        return EndUserRefreshToken(raw)  # type: ignore[arg-type]  # simplejwt takes the encoded token too
    except TokenError:
        raise Unauthenticated("The token is invalid, expired or blacklisted.", code="token_not_valid") from None


def end_user_refresh(*, app: App, refresh: str) -> dict[str, str]:
    """Rotate a refresh token: blacklist it, return a new pair (401 for a bad, revoked, other
    app's or disabled end user's token)."""
    token = _refresh_token(refresh)
    if token.get(APP_CLAIM) != str(app.id):
        raise Unauthenticated("This token belongs to another app.", code="wrong_app")
    end_user = EndUser.objects.select_related("group").filter(pk=token.get(END_USER_CLAIM), app=app).first()
    if end_user is None or not end_user.is_active:
        raise Unauthenticated("This account is disabled or no longer exists.", code="account_disabled")
    if token.get(TOKEN_VERSION_CLAIM, 0) != end_user.token_version:
        raise Unauthenticated("The token has been revoked.", code="token_revoked")
    token.blacklist()
    return enduser_tokens.token_pair(end_user=end_user)


def end_user_logout(*, app: App, refresh: str) -> None:
    """Blacklist a refresh token of this app (its access tokens expire on their own)."""
    token = _refresh_token(refresh)
    if token.get(APP_CLAIM) != str(app.id):
        raise Unauthenticated("This token belongs to another app.", code="wrong_app")
    token.blacklist()


def _revoke(end_user: EndUser) -> None:
    EndUser.objects.filter(pk=end_user.pk).update(token_version=F("token_version") + 1, updated_at=timezone.now())
    end_user.refresh_from_db(fields=["token_version"])


def end_user_password_change(*, end_user: EndUser, old: str, new: str) -> dict[str, str]:
    """Change the password, revoke every token issued before; return a new pair for the caller."""
    if not end_user.check_password(old):
        raise InvalidInput(details={"old": ["The current password is wrong."]})
    try:
        validate_password(new, user=end_user)  # type: ignore[arg-type]  # validators read attributes
    except DjangoValidationError as exc:
        raise InvalidInput(details={"new": list(exc.messages)}) from None
    with transaction.atomic():
        end_user.set_password(new)
        end_user.save(update_fields=["password", "updated_at"])
        _revoke(end_user)
    return enduser_tokens.token_pair(end_user=end_user)


@transaction.atomic
def end_user_update(*, end_user: EndUser, group: str | None = None, is_active: bool | None = None) -> EndUser:
    """Regroup and/or disable an end user. Disabling revokes every token (re-enabling does not
    bring them back); a new group applies at the end user's next request."""
    if group is not None:
        end_user.group = group_get(app=end_user.app, name=group)
    if is_active is not None:
        end_user.is_active = is_active
    end_user.save(update_fields=["group", "is_active", "updated_at"])
    if is_active is False:
        _revoke(end_user)
    return end_user


def end_user_delete(*, end_user: EndUser) -> None:
    """Delete an end user and their integrations; their sessions stay in the builder's history."""
    end_user.delete()


# --- invitations ----------------------------------------------------------------------------

@dataclass(frozen=True)
class CreatedInvitation:
    invitation: Invitation
    token: str  # shown once, never stored


def invitation_create(*, app: App, email: str) -> CreatedInvitation:
    """Invite `email` to the app: a single-use token valid JUNCTION_INVITATION_DAYS days."""
    token = INVITATION_PREFIX + secrets.token_urlsafe(32)
    invitation = Invitation.objects.create(
        app=app, email=_normal_email(email), hashed_token=_hash(token),
        expires_at=timezone.now() + timedelta(days=settings.JUNCTION_INVITATION_DAYS),
    )
    return CreatedInvitation(invitation=invitation, token=token)


def invitation_delete(*, invitation: Invitation) -> None:
    invitation.delete()
