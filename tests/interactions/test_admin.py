"""The interactions admin: the session list and page, cancel/retry buttons, interaction buttons,
versions and their diff, owner scoping and the list pages' query counts."""
from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from interactions import services
from interactions.models import Interaction, InteractionVersion, Session, TaskRun
from tests.admin_helpers import logged_in, make_builder, query_count
from tests.conftest import SIMPLE_TASKS, make_integration, make_interaction, make_user

STARTED = datetime(2026, 1, 2, 3, 4, 5, 678_000, tzinfo=UTC)
SESSIONS = "/admin/interactions/session/"
INTERACTIONS = "/admin/interactions/interaction/"


def recorded_session(user, interaction=None, *, status="completed", started=STARTED, seconds=1.5) -> Session:
    """A session as the executor leaves it: `shape` completed in 250 ms, `check` failed after two attempts."""
    interaction = interaction or make_interaction(user, active=True)
    finished = started + timedelta(seconds=seconds) if status in Session.TERMINAL else None
    session = Session.objects.create(
        user=user, interaction=interaction, version=interaction.current_version, input={"shape": {"data": [1]}},
        status=status, started_at=started, finished_at=finished,
    )
    Session.objects.filter(pk=session.pk).update(created_at=started)
    TaskRun.objects.create(session=session, name="shape", status="completed", output={"marker": "out-1"},
                           attempts=1, started_at=started, finished_at=started + timedelta(milliseconds=250))
    TaskRun.objects.create(session=session, name="check", status="failed", error="expression was falsy",
                           attempts=2, started_at=started + timedelta(milliseconds=251),
                           finished_at=started + timedelta(milliseconds=300))
    session.refresh_from_db()
    return session


def rows(html: str) -> int:
    return len(re.findall(r'<tr[^>]*>\s*<td class="action-checkbox">', html))


# --- the session list -------------------------------------------------------------------------

def test_session_list_shows_interaction_coloured_status_duration_and_start_to_the_second(superuser_client, user):
    session = recorded_session(user)
    html = superuser_client.get(SESSIONS).content.decode()
    assert session.interaction.name in html
    assert 'class="junction-status junction-status-completed" data-status="completed"' in html
    assert "2026-01-02 03:04:05<" in html  # to the second, in the server's zone (UTC)
    assert "1.500 s" in html
    assert str(session.pk)[:8] in html


def test_a_running_session_shows_its_time_so_far(superuser_client, user):
    recorded_session(user, status="running", started=datetime.now(UTC) - timedelta(seconds=3))
    html = superuser_client.get(SESSIONS).content.decode()
    assert re.search(r"3\.\d{3} s…", html), "a running session's duration ends in an ellipsis"


def test_session_list_filters_by_interaction_status_and_date(superuser_client, user):
    first = make_interaction(user, active=True, name="first")
    second = make_interaction(user, active=True, name="second")
    a = recorded_session(user, first, status="completed")
    b = recorded_session(user, second, status="failed", started=STARTED + timedelta(days=3))

    by_interaction = superuser_client.get(SESSIONS, {"interaction": str(first.pk)}).content.decode()
    assert str(a.pk)[:8] in by_interaction and str(b.pk)[:8] not in by_interaction

    by_status = superuser_client.get(SESSIONS, {"status__exact": "failed"}).content.decode()
    assert str(b.pk)[:8] in by_status and str(a.pk)[:8] not in by_status

    day = {"created_at__gte": "2026-01-02 00:00:00+00:00", "created_at__lt": "2026-01-03 00:00:00+00:00"}
    by_date = superuser_client.get(SESSIONS, day).content.decode()
    assert str(a.pk)[:8] in by_date and str(b.pk)[:8] not in by_date

    nonsense = superuser_client.get(SESSIONS, {"interaction": "not-an-id"})
    assert nonsense.status_code == 200 and rows(nonsense.content.decode()) == 0


def test_session_list_query_count_does_not_grow_with_rows(superuser_client, user):
    recorded_session(user)
    few = query_count(lambda: superuser_client.get(SESSIONS))
    for index in range(8):  # other owners, interactions and versions: each would be a query per row
        owner = make_user(f"owner{index}")
        recorded_session(owner, make_interaction(owner, active=True))
    response = superuser_client.get(SESSIONS)
    assert rows(response.content.decode()) == 9
    # The interaction filter's choices are one query whatever the number of interactions.
    assert query_count(lambda: superuser_client.get(SESSIONS)) == few


def test_interaction_list_query_count_does_not_grow_with_rows(superuser_client, user):
    make_interaction(user)
    few = query_count(lambda: superuser_client.get(INTERACTIONS))
    for index in range(8):
        owner = make_user(f"owner{index}")
        services.interaction_update(interaction=make_interaction(owner), tasks={**SIMPLE_TASKS, "extra": {
            "type": "transform", "body": {"data": 1, "expression": "@"}}})
    assert rows(superuser_client.get(INTERACTIONS).content.decode()) == 9
    assert query_count(lambda: superuser_client.get(INTERACTIONS)) == few


# --- the session page ---------------------------------------------------------------------------

def test_session_page_shows_task_runs_to_the_millisecond(superuser_client, user):
    session = recorded_session(user)
    html = superuser_client.get(f"{SESSIONS}{session.pk}/change/").content.decode()
    assert "2026-01-02 03:04:05.678" in html  # the session's and `shape`'s start
    assert "2026-01-02 03:04:05.928" in html  # `shape` finished 250 ms later
    assert "250 ms" in html and "49 ms" in html
    assert "expression was falsy" in html and "out-1" in html
    assert 'data-status="failed"' in html and 'data-status="completed"' in html
    assert "TaskRun object" not in html and "Session object" not in html
    assert f"{session.interaction.name} · {str(session.pk)[:8]} (completed)" in html  # the title


def test_readable_names_for_every_interactions_model(user, django_assert_num_queries):
    session = recorded_session(user)
    short = f"{str(session.pk)[:8]} (completed)"
    with django_assert_num_queries(0):  # a name never costs a query
        assert str(session) == f"session {short}"
    loaded = Session.objects.select_related("interaction", "version__interaction").get(pk=session.pk)
    run = loaded.task_runs.get(name="shape")
    with django_assert_num_queries(0):
        assert str(loaded) == f"{loaded.interaction.name} · {short}"
        assert str(loaded.version) == f"{loaded.interaction.name} v1"
        assert str(run) == "shape (completed)"
    assert str(InteractionVersion.objects.get(pk=session.version_id)) == "v1"


def test_cancel_button_cancels_through_the_session_service(superuser_client, user):
    session = recorded_session(user, status="running", started=datetime.now(UTC))
    TaskRun.objects.filter(session=session, name="check").update(status="pending", finished_at=None, error=None)
    page = superuser_client.get(f"{SESSIONS}{session.pk}/change/").content.decode()
    assert 'data-testid="admin-session-cancel"' in page

    response = superuser_client.post(f"{SESSIONS}{session.pk}/cancel/")
    assert response.status_code == 302 and response["Location"] == f"{SESSIONS}{session.pk}/change/"
    session.refresh_from_db()
    assert session.status == "cancelled"
    assert session.task_runs.get(name="check").status == "cancelled"  # as session_cancel leaves it


def test_cancelling_a_finished_session_says_so_and_changes_nothing(superuser_client, user):
    session = recorded_session(user, status="completed")
    response = superuser_client.post(f"{SESSIONS}{session.pk}/cancel/", follow=True)
    assert "already finished" in response.content.decode()
    session.refresh_from_db()
    assert session.status == "completed"


def test_cancel_and_retry_take_only_post(superuser_client, user):
    session = recorded_session(user)
    assert superuser_client.get(f"{SESSIONS}{session.pk}/cancel/").status_code == 405
    assert superuser_client.get(f"{SESSIONS}{session.pk}/retry/").status_code == 405


def test_retry_button_starts_a_retry_session(superuser_client, user):
    session = recorded_session(user, status="failed")
    response = superuser_client.post(f"{SESSIONS}{session.pk}/retry/")
    retry = Session.objects.get(retry_of=session)
    assert response.status_code == 302 and response["Location"] == f"{SESSIONS}{retry.pk}/change/"
    # Pure tasks run in the call: `shape` reused, `check` run again.
    assert retry.task_runs.get(name="shape").output == {"marker": "out-1"}


def test_retry_of_an_inactive_interaction_is_a_message_not_an_error(superuser_client, user):
    session = recorded_session(user, status="failed")
    services.interaction_set_active(interaction=session.interaction, active=False)
    response = superuser_client.post(f"{SESSIONS}{session.pk}/retry/", follow=True)
    assert response.status_code == 200 and "not active" in response.content.decode()
    assert not Session.objects.filter(retry_of=session).exists()
    # The list action too (it raised before).
    response = superuser_client.post(SESSIONS, {"action": "retry", "_selected_action": [str(session.pk)]},
                                     follow=True)
    assert response.status_code == 200 and "not active" in response.content.decode()


# --- the interaction page -----------------------------------------------------------------------

def test_activate_and_deactivate_buttons_go_through_the_service(superuser_client, user):
    interaction = make_interaction(user)
    page = superuser_client.get(f"{INTERACTIONS}{interaction.pk}/change/").content.decode()
    assert 'data-testid="admin-activate"' in page and 'data-testid="admin-deactivate"' not in page

    assert superuser_client.post(f"{INTERACTIONS}{interaction.pk}/activate/").status_code == 302
    interaction.refresh_from_db()
    assert interaction.is_active and interaction.current_version.number == 1
    page = superuser_client.get(f"{INTERACTIONS}{interaction.pk}/change/").content.decode()
    assert 'data-testid="admin-deactivate"' in page

    superuser_client.post(f"{INTERACTIONS}{interaction.pk}/deactivate/")
    interaction.refresh_from_db()
    assert not interaction.is_active
    assert superuser_client.get(f"{INTERACTIONS}{interaction.pk}/activate/").status_code == 405


def test_interaction_page_links_its_sessions(superuser_client, user):
    interaction = make_interaction(user, active=True)
    page = superuser_client.get(f"{INTERACTIONS}{interaction.pk}/change/").content.decode()
    assert f'href="{SESSIONS}?interaction={interaction.pk}"' in page
    listing = superuser_client.get(INTERACTIONS).content.decode()
    assert f'href="{SESSIONS}?interaction={interaction.pk}"' in listing


def _three_versions(user) -> Interaction:
    interaction = make_interaction(user)
    with_extra = {**SIMPLE_TASKS, "extra": {"type": "transform", "body": {"data": 1, "expression": "@"}}}
    services.interaction_update(interaction=interaction, tasks=with_extra)
    changed = {**with_extra, "shape": {"type": "transform", "body": {"data": None, "expression": "items[-1]"}}}
    changed.pop("check")
    return services.interaction_update(interaction=interaction, tasks=changed)


def test_versions_are_listed_on_the_interaction_page(superuser_client, user):
    interaction = _three_versions(user)
    page = superuser_client.get(f"{INTERACTIONS}{interaction.pk}/change/").content.decode()
    for number in (1, 2, 3):
        assert f'data-testid="admin-version-{number}"' in page
    assert "v3 (current)" in page
    assert "versions/diff/?from=2&amp;to=3" in page


def test_diff_between_any_two_versions(superuser_client, user):
    interaction = _three_versions(user)
    response = superuser_client.get(f"{INTERACTIONS}{interaction.pk}/versions/diff/", {"from": 1, "to": 3})
    assert response.status_code == 200
    diff = response.context["diff"]
    assert (diff["added"], diff["removed"], diff["changed"]) == (["extra"], ["check"], ["shape"])
    html = response.content.decode()
    assert '<span class="junction-diff-removed">-      &quot;expression&quot;: &quot;items[0]&quot;' in html
    assert '<span class="junction-diff-added">+      &quot;expression&quot;: &quot;items[-1]&quot;' in html


def test_diff_defaults_to_the_last_two_versions_and_ignores_unknown_numbers(superuser_client, user):
    interaction = _three_versions(user)
    response = superuser_client.get(f"{INTERACTIONS}{interaction.pk}/versions/diff/", {"from": "x", "to": 99})
    assert (response.context["older"].number, response.context["newer"].number) == (2, 3)
    same = superuser_client.get(f"{INTERACTIONS}{interaction.pk}/versions/diff/", {"from": 2, "to": 2})
    assert "The two definitions are the same." in same.content.decode()


# --- builders: their own objects only -----------------------------------------------------------

def test_a_builder_sees_only_their_own_interactions_and_sessions(builder_client, builder, other_user):
    mine = recorded_session(builder, make_interaction(builder, active=True, name="mine"))
    theirs = recorded_session(other_user, make_interaction(other_user, active=True, name="theirs"))

    listing = builder_client.get(INTERACTIONS).content.decode()
    assert ">mine<" in listing and ">theirs<" not in listing
    sessions = builder_client.get(SESSIONS).content.decode()
    assert str(mine.pk)[:8] in sessions and str(theirs.pk)[:8] not in sessions
    assert "?interaction=" in sessions and f"?interaction={theirs.interaction_id}" not in sessions  # filter choices

    # Another builder's objects are not found, whatever the page.
    assert builder_client.get(f"{SESSIONS}{theirs.pk}/change/").status_code == 302  # the admin's "not found"
    for url in (f"{SESSIONS}{theirs.pk}/cancel/", f"{SESSIONS}{theirs.pk}/retry/",
                f"{INTERACTIONS}{theirs.interaction_id}/activate/"):
        assert builder_client.post(url).status_code == 404, url
    assert builder_client.get(f"{INTERACTIONS}{theirs.interaction_id}/versions/diff/").status_code == 404
    assert not Session.objects.filter(retry_of=theirs).exists()
    theirs.refresh_from_db()
    assert theirs.status == "completed"


def test_a_builder_operates_their_own_sessions(builder_client, builder):
    session = recorded_session(builder, status="failed")
    assert builder_client.post(f"{SESSIONS}{session.pk}/retry/").status_code == 302
    assert Session.objects.filter(retry_of=session, user=builder).exists()
    assert builder_client.post(f"{INTERACTIONS}{session.interaction_id}/deactivate/").status_code == 302
    assert not Interaction.objects.get(pk=session.interaction_id).is_active


def test_a_builders_new_interaction_is_theirs_and_checked_against_their_integrations(builder_client, builder,
                                                                                     other_user):
    import json

    page = builder_client.get(f"{INTERACTIONS}add/").content.decode()
    assert 'name="user"' not in page
    response = builder_client.post(f"{INTERACTIONS}add/", {
        "name": "built", "description": "", "deadline_seconds": "", "tasks": json.dumps(SIMPLE_TASKS)})
    assert response.status_code == 302
    assert Interaction.objects.get(name="built").user == builder

    foreign = make_integration(other_user, provider="twitter")
    tweet = {"tweet": {"type": "send_tweet", "integration": str(foreign.pk), "body": {"text": "hi"}}}
    response = builder_client.post(f"{INTERACTIONS}add/", {
        "name": "borrowed", "description": "", "deadline_seconds": "", "tasks": json.dumps(tweet)})
    assert response.status_code == 200
    assert any("tasks.tweet.integration" in error for error in response.context["adminform"].form.errors["tasks"])
    assert not Interaction.objects.filter(name="borrowed").exists()


@pytest.mark.parametrize("page", ["sessions", "interactions", "add", "session", "interaction", "diff"])
def test_builder_pages_load(builder_client, builder, page):
    session = recorded_session(builder)
    interaction = f"{INTERACTIONS}{session.interaction_id}"
    url = {"sessions": SESSIONS, "interactions": INTERACTIONS, "add": f"{INTERACTIONS}add/",
           "session": f"{SESSIONS}{session.pk}/change/", "interaction": f"{interaction}/change/",
           "diff": f"{interaction}/versions/diff/"}[page]
    assert builder_client.get(url).status_code == 200


def test_a_builder_needs_the_change_permission_to_operate(builder, db):
    from django.contrib.auth.models import Permission

    session = recorded_session(builder, status="failed")
    viewer = make_builder("viewer")
    viewer.groups.clear()
    viewer.user_permissions.set(Permission.objects.filter(codename__in=["view_session", "view_taskrun"]))
    session_of_viewer = recorded_session(viewer, status="failed")
    client = logged_in(viewer)
    page = client.get(f"{SESSIONS}{session_of_viewer.pk}/change/").content.decode()
    assert "admin-session-retry" not in page
    assert client.post(f"{SESSIONS}{session_of_viewer.pk}/retry/").status_code == 403
    assert not Session.objects.filter(retry_of__in=[session, session_of_viewer]).exists()


def test_sessions_are_found_by_the_start_of_their_id(superuser_client, user):
    sessions = [recorded_session(user) for _ in range(3)]
    target = sessions[0]
    for term in (str(target.pk)[:8], str(target.pk), str(target.pk)[:13].upper()):
        html = superuser_client.get(SESSIONS, {"q": term}).content.decode()
        assert str(target.pk)[:8] in html, term
        assert all(str(other.pk)[:8] not in html for other in sessions[1:] if not str(other.pk).startswith(term)), term
    by_name = superuser_client.get(SESSIONS, {"q": target.interaction.name}).content.decode()
    assert rows(by_name) == 1
    assert rows(superuser_client.get(SESSIONS, {"q": "zzzz-not-found"}).content.decode()) == 0


def test_bulk_delete_removes_interactions_with_their_running_sessions(superuser_client, user):
    running = recorded_session(user, status="running", started=datetime.now(UTC))
    response = superuser_client.post(INTERACTIONS, {
        "action": "delete_selected", "_selected_action": [str(running.interaction_id)], "post": "yes"})
    assert response.status_code == 302
    assert not Interaction.objects.filter(pk=running.interaction_id).exists()
    assert not Session.objects.filter(pk=running.pk).exists()


def test_buttons_need_the_csrf_token(user):
    from django.test import Client

    from accounts.models import User

    interaction = make_interaction(user)
    client = Client(enforce_csrf_checks=True)
    client.force_login(User.objects.create_superuser(username="root", email="root@example.com", password="x"))
    assert client.post(f"{INTERACTIONS}{interaction.pk}/activate/").status_code == 403
    interaction.refresh_from_db()
    assert not interaction.is_active

    page = client.get(f"{INTERACTIONS}{interaction.pk}/change/").content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    assert client.post(f"{INTERACTIONS}{interaction.pk}/activate/", {"csrfmiddlewaretoken": token}).status_code == 302
    interaction.refresh_from_db()
    assert interaction.is_active


def test_who_may_run_is_set_in_the_interaction_form(builder_client, builder, other_user):
    """The app, the access and the allowed groups (SPEC §2.7) are set in the same form, through the
    same checks as the API: only one's own app, groups of that app, an app for end users."""
    import json

    from accounts import app_services

    shop = app_services.app_create(owner=builder, name="Shop", slug="admin-shop", groups=["users", "premium"])
    theirs = app_services.app_create(owner=other_user, name="Theirs", slug="admin-theirs")
    form = {"name": "for-members", "description": "", "deadline_seconds": "", "tasks": json.dumps(SIMPLE_TASKS),
            "app": str(shop.pk), "access": "end_users", "allowed_groups": "premium"}
    assert 'name="access"' in builder_client.get(f"{INTERACTIONS}add/").content.decode()
    assert builder_client.post(f"{INTERACTIONS}add/", form).status_code == 302
    saved = Interaction.objects.get(name="for-members")
    assert (saved.app_id, saved.access, saved.allowed_groups) == (shop.pk, "end_users", ["premium"])

    refused = [
        ({"app": str(theirs.pk)}, "app"),  # not theirs: not even offered
        ({"app": "", "access": "end_users", "allowed_groups": ""}, "access"),  # end users need an app
        ({"allowed_groups": "gold"}, "allowed_groups"),  # not a group of the app
    ]
    for change, field in refused:
        response = builder_client.post(f"{INTERACTIONS}add/", {**form, "name": f"refused-{field}", **change})
        assert response.status_code == 200, field
        assert field in response.context["adminform"].form.errors, (field, response.context["adminform"].form.errors)
        assert not Interaction.objects.filter(name=f"refused-{field}").exists()

    page = builder_client.get(f"{INTERACTIONS}{saved.pk}/change/")
    edit = {**form, "access": "public", "allowed_groups": ""}
    response = builder_client.post(f"{INTERACTIONS}{saved.pk}/change/", edit)
    assert page.status_code == 200 and response.status_code == 302
    saved.refresh_from_db()
    assert (saved.access, saved.allowed_groups, saved.current_version.number) == ("public", [], 1)
