"""Who may run an interaction, the end user's sessions and integrations (issue 10 items 2, 5, 6).

Interactions of a builder's app are run by its end users (of the allowed groups), or by anyone
when public; the session records the end user, who lists their own sessions and integrations
under the app's routes and nothing else.
"""
from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from accounts import services as account_services
from accounts.enduser_auth import EndUserJWTAuthentication
from integrations import services as integration_services
from interactions.models import Interaction, Session
from tests.conftest import (
    SIMPLE_TASKS,
    TWITTER_CREDENTIALS,
    client_for,
    end_user_client,
    make_app,
    make_end_user,
    make_integration,
    make_interaction,
)

pytestmark = pytest.mark.django_db
RUN_BODY = {"shape": {"data": {"items": [1]}}}
TWEET_TASKS = {"tweet": {"type": "send_tweet", "body": {"text": None}}}


def error(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, (response.status_code, response.content[:300])
    body = response.json()
    assert set(body) == {"code", "message", "details"}, body
    if code is not None:
        assert body["code"] == code, body
    return body


def run(client, interaction, body=None, **headers):
    return client.post(f"/api/interactions/{interaction.id}/run/", body or RUN_BODY, format="json", **headers)


def open_to(interaction, app, access="end_users", groups=()):
    Interaction.objects.filter(pk=interaction.pk).update(app=app, access=access, allowed_groups=list(groups))
    interaction.refresh_from_db()
    return interaction


@pytest.fixture
def shop(user):
    return make_app(user, slug="shop", groups=["users", "premium"])


@pytest.fixture
def blog(other_user):
    return make_app(other_user, slug="blog")


@pytest.fixture
def members_only(user, shop):
    """Alice's interaction for shop's premium end users."""
    return open_to(make_interaction(user, name="members", active=True), shop, groups=["premium"])


# --- the interaction's settings -------------------------------------------------------------

class TestSettings:
    def test_representation_and_no_new_version(self, api, shop):
        created = api.post("/api/interactions/", {"name": "x", "tasks": SIMPLE_TASKS}, format="json").json()
        assert (created["app"], created["access"], created["allowed_groups"]) == (None, "owner", [])
        response = api.patch(f"/api/interactions/{created['id']}/",
                             {"app": str(shop.id), "access": "end_users", "allowed_groups": ["premium"]}, format="json")
        assert response.status_code == 200, response.content
        body = response.json()
        assert (body["app"], body["access"], body["allowed_groups"]) == (str(shop.id), "end_users", ["premium"])
        assert body["version"] == 1  # a setting, like is_active: no new version

    def test_access_other_than_owner_needs_an_app(self, api):
        body = error(api.post("/api/interactions/", {"name": "x", "tasks": SIMPLE_TASKS, "access": "public"},
                              format="json"), 400)
        assert "access" in body["details"]

    def test_another_builders_app_is_400(self, api, blog):
        body = error(api.post("/api/interactions/", {"name": "x", "tasks": SIMPLE_TASKS, "app": str(blog.id),
                                                     "access": "end_users"}, format="json"), 400)
        assert "app" in body["details"]
        assert not Interaction.objects.filter(name="x").exists()

    def test_unknown_groups_are_400(self, api, shop, blog):
        body = error(api.post("/api/interactions/", {"name": "x", "tasks": SIMPLE_TASKS, "app": str(shop.id),
                                                     "access": "end_users", "allowed_groups": ["gold"]},
                              format="json"), 400)
        assert body["details"]["allowed_groups"] == ["Unknown group 'gold' of app 'shop'."]

    def test_a_task_may_leave_its_integration_out_only_when_not_owner(self, api, shop):
        body = error(api.post("/api/interactions/", {"name": "t", "tasks": TWEET_TASKS}, format="json"), 400)
        assert "tasks.tweet.integration" in body["details"]
        response = api.post("/api/interactions/", {"name": "t", "tasks": TWEET_TASKS, "app": str(shop.id),
                                                   "access": "end_users"}, format="json")
        assert response.status_code == 201, response.content
        # Back to owner-only would leave the tweet without an account: refused.
        body = error(api.patch(f"/api/interactions/{response.json()['id']}/", {"access": "owner"}, format="json"), 400)
        assert "tasks.tweet.integration" in body["details"]
        assert Interaction.objects.get(name="t").access == "end_users"

    def test_an_end_users_integration_cannot_be_fixed_in_a_definition(self, api, user, shop):
        end_user = make_end_user(shop)
        theirs = integration_services.integration_create(user=user, end_user=end_user, name="tw", provider="twitter",
                                                         credentials=TWITTER_CREDENTIALS)
        tasks = {"tweet": {"type": "send_tweet", "integration": str(theirs.id), "body": {"text": "hi"}}}
        body = error(api.post("/api/interactions/", {"name": "t", "tasks": tasks}, format="json"), 400)
        assert "tasks.tweet.integration" in body["details"]
        assert api.get("/api/integrations/").json()["count"] == 0  # not the builder's to list either


# --- who may run ------------------------------------------------------------------------------

class TestRun:
    def test_an_allowed_end_user_runs_and_the_session_records_them(self, shop, members_only):
        end_user = make_end_user(shop, group="premium")
        response = run(end_user_client(end_user), members_only)
        assert response.status_code == 202, response.content
        session = response.json()
        assert session["end_user"] == str(end_user.id) and session["status"] == "completed"
        assert response["Location"] == f"/api/apps/shop/sessions/{session['id']}/"
        stored = Session.objects.get(pk=session["id"])
        assert stored.end_user == end_user and stored.user == members_only.user  # the owner's quota

    def test_a_group_not_allowed_is_403(self, shop, members_only):
        body = error(run(end_user_client(make_end_user(shop)), members_only), 403, "group_not_allowed")
        assert body["details"] == {"group": ["users"], "allowed_groups": ["premium"]}
        assert not Session.objects.exists()

    def test_empty_allowed_groups_admit_every_group(self, user, shop):
        interaction = open_to(make_interaction(user, active=True), shop)
        assert run(end_user_client(make_end_user(shop)), interaction).status_code == 202

    def test_another_apps_end_user_is_401(self, blog, members_only):
        error(run(end_user_client(make_end_user(blog)), members_only), 401, "wrong_app")
        assert not Session.objects.exists()

    def test_an_owner_only_interaction_is_401_to_end_users(self, user, shop):
        interaction = make_interaction(user, active=True)
        error(run(end_user_client(make_end_user(shop, group="premium")), interaction), 401, "not_open_to_end_users")

    def test_the_builder_still_runs_it(self, api, members_only):
        response = run(api, members_only)
        assert response.status_code == 202 and response.json()["end_user"] is None
        assert response["Location"].startswith("/api/sessions/")

    def test_another_builder_is_404(self, other_api, members_only):
        error(run(other_api, members_only), 404, "not_found")

    def test_anonymous_is_401_unless_public(self, anon, user, shop, members_only):
        error(run(anon, members_only), 401, "not_authenticated")
        public = open_to(make_interaction(user, active=True), shop, access="public")
        response = run(anon, public)
        assert response.status_code == 202 and response.json()["status"] == "completed"
        assert "Location" not in response  # an anonymous caller can read no session

    def test_a_builder_runs_another_builders_public_interaction(self, other_api, user, shop):
        public = open_to(make_interaction(user, active=True), shop, access="public")
        response = run(other_api, public)
        assert response.status_code == 202
        assert Session.objects.get(pk=response.json()["id"]).user == user

    def test_an_end_user_of_the_app_runs_a_public_interaction_as_themselves(self, user, shop, blog):
        public = open_to(make_interaction(user, active=True), shop, access="public")
        end_user = make_end_user(shop)
        assert run(end_user_client(end_user), public).json()["end_user"] == str(end_user.id)
        error(run(end_user_client(make_end_user(blog)), public), 401, "wrong_app")

    def test_public_calls_are_rate_limited_per_address(self, settings, anon, user, shop):
        settings.JUNCTION_THROTTLE_PUBLIC_RUN = "2/min"
        public = open_to(make_interaction(user, active=True), shop, access="public")
        assert run(anon, public).status_code == 202
        assert run(anon, public).status_code == 202
        response = run(anon, public)
        error(response, 429, "throttled")
        assert int(response["Retry-After"]) >= 1
        assert run(APIClient(REMOTE_ADDR="10.1.2.3"), public).status_code == 202  # another address

    def test_an_anonymous_idempotency_key_is_400(self, anon, user, shop):
        public = open_to(make_interaction(user, active=True), shop, access="public")
        body = error(run(anon, public, HTTP_IDEMPOTENCY_KEY="k1"), 400)
        assert "Idempotency-Key" in body["details"]

    def test_an_idempotency_key_belongs_to_its_end_user(self, shop, members_only):
        ann, ben = make_end_user(shop, group="premium"), make_end_user(shop, group="premium")
        first = run(end_user_client(ann), members_only, HTTP_IDEMPOTENCY_KEY="order-1").json()
        again = run(end_user_client(ann), members_only, HTTP_IDEMPOTENCY_KEY="order-1").json()
        other = run(end_user_client(ben), members_only, HTTP_IDEMPOTENCY_KEY="order-1").json()
        assert first["id"] == again["id"] and other["id"] != first["id"]
        assert other["end_user"] == str(ben.id)

    def test_a_disabled_end_user_cannot_run(self, shop, members_only):
        from accounts import app_services

        end_user = make_end_user(shop, group="premium")
        client = end_user_client(end_user)
        app_services.end_user_update(end_user=end_user, is_active=False)
        error(run(client, members_only), 401)

    def test_end_user_runs_count_against_the_owners_plan(self, settings, user, shop, members_only):
        settings.JUNCTION_RATE_PLANS = {"default": "1/min"}
        client = end_user_client(make_end_user(shop, group="premium"))
        assert run(client, members_only).status_code == 202
        error(run(client_for(user), members_only), 429, "throttled")


class TestRoundTrips:
    def test_the_end_user_check_reads_nothing_for_a_builders_token(self, user):
        from rest_framework.test import APIRequestFactory

        token = account_services.token_pair(user=user)["access"]
        request = APIRequestFactory().post("/", HTTP_AUTHORIZATION=f"Bearer {token}")
        with CaptureQueriesContext(connection) as queries:
            assert EndUserJWTAuthentication().authenticate(request) is None
        assert len(queries) == 0

    def test_an_end_user_run_costs_three_round_trips(self, api, shop, members_only):
        """The end user with their group and app (one query), the interaction (one), the session's
        inserts with the quota check (one). A builder's warm call costs one: its caller and
        interaction come from the run path's caches (config/hotcache.py, tests/config/test_hotcache.py),
        which end users' calls do not use yet."""
        client = end_user_client(make_end_user(shop, group="premium"))
        run(api, members_only), run(client, members_only)  # warm the per-process caches
        assert run(api, members_only).status_code == 202
        with CaptureQueriesContext(connection) as end_user:
            assert run(client, members_only).status_code == 202
        sent = [q["sql"] for q in end_user.captured_queries if "SAVEPOINT" not in q["sql"]]
        assert len(sent) <= 3, sent


# --- the end user's sessions -------------------------------------------------------------------

class TestEndUserSessions:
    def test_an_end_user_lists_only_their_own_sessions(self, api, shop, members_only):
        ann, ben = make_end_user(shop, group="premium"), make_end_user(shop, group="premium")
        ann_client, ben_client = end_user_client(ann), end_user_client(ben)
        mine = run(ann_client, members_only).json()["id"]
        theirs = run(ben_client, members_only).json()["id"]
        builders = run(api, members_only).json()["id"]
        listed = ann_client.get("/api/apps/shop/sessions/").json()
        assert [item["id"] for item in listed["results"]] == [mine]
        assert ann_client.get(f"/api/apps/shop/sessions/{mine}/").json()["end_user"] == str(ann.id)
        error(ann_client.get(f"/api/apps/shop/sessions/{theirs}/"), 404, "not_found")
        error(ann_client.get(f"/api/apps/shop/sessions/{builders}/"), 404, "not_found")

    def test_another_apps_end_user_is_401_on_its_sessions(self, shop, blog, members_only):
        session = run(end_user_client(make_end_user(shop, group="premium")), members_only).json()["id"]
        error(end_user_client(make_end_user(blog)).get(f"/api/apps/shop/sessions/{session}/"), 401, "wrong_app")

    def test_the_builder_sees_and_filters_by_end_user(self, api, shop, members_only):
        ann, ben = make_end_user(shop, group="premium"), make_end_user(shop, group="premium")
        ann_session = run(end_user_client(ann), members_only).json()["id"]
        run(end_user_client(ben), members_only)
        run(api, members_only)
        assert api.get("/api/sessions/").json()["count"] == 3
        filtered = api.get(f"/api/sessions/?end_user={ann.id}").json()["results"]
        assert [item["id"] for item in filtered] == [ann_session]
        assert api.get(f"/api/sessions/{ann_session}/").json()["end_user"] == str(ann.id)

    def test_the_admin_shows_the_end_user(self, admin_client, shop, members_only):
        ann = make_end_user(shop, "shown@example.com", group="premium")
        run(end_user_client(ann), members_only)
        page = admin_client.get(f"/admin/interactions/session/?end_user__app__id__exact={shop.id}")
        assert page.status_code == 200 and "shown@example.com" in page.content.decode()


# --- the end user's integrations -----------------------------------------------------------------

class TestEndUserIntegrations:
    def _connect(self, user, end_user, name="my-twitter"):
        return integration_services.integration_create(user=user, end_user=end_user, name=name, provider="twitter",
                                                       credentials=TWITTER_CREDENTIALS)

    def test_list_and_disconnect_their_own(self, user, shop):
        ann, ben = make_end_user(shop), make_end_user(shop)
        mine, theirs = self._connect(user, ann), self._connect(user, ben)  # the same name: per end user
        builders = make_integration(user)
        client = end_user_client(ann)
        listed = client.get("/api/apps/shop/integrations/").json()["results"]
        assert [item["id"] for item in listed] == [str(mine.id)]
        assert listed[0]["credentials"]["access_token_secret"] == "********"
        error(client.delete(f"/api/apps/shop/integrations/{theirs.id}/"), 404)
        error(client.delete(f"/api/apps/shop/integrations/{builders.id}/"), 404)
        assert client.delete(f"/api/apps/shop/integrations/{mine.id}/").status_code == 204
        assert {i.id for i in mine.__class__.objects.all()} == {theirs.id, builders.id}

    def test_another_apps_end_user_is_401(self, user, shop, blog):
        self._connect(user, make_end_user(shop))
        error(end_user_client(make_end_user(blog)).get("/api/apps/shop/integrations/"), 401, "wrong_app")


# --- the endpoint view --------------------------------------------------------------------------

class TestEndpoint:
    def test_says_how_an_end_user_authenticates(self, api, members_only):
        body = api.get(f"/api/interactions/{members_only.id}/endpoint/").json()
        assert body["access"] == "end_users"
        auth = body["authentication"]
        assert auth["login_url"] == "http://testserver/api/apps/shop/auth/login/"
        assert auth["allowed_groups"] == ["premium"] and auth["scheme"] == "end_user_jwt"
        assert body["headers"]["Authorization"] == "Bearer <end user's access token>"
        assert "Bearer" in body["curl"]

    def test_public_needs_no_credentials(self, api, user, shop):
        public = open_to(make_interaction(user, active=True), shop, access="public")
        body = api.get(f"/api/interactions/{public.id}/endpoint/").json()
        assert body["authentication"]["scheme"] == "none" and "Authorization" not in body["headers"]
        assert "Authorization" not in body["curl"]

    def test_owner_uses_builder_credentials(self, api, user):
        body = api.get(f"/api/interactions/{make_interaction(user).id}/endpoint/").json()
        assert body["access"] == "owner" and body["authentication"]["scheme"] == "builder"
        assert "Api-Key" in body["curl"]


def test_log_lines_name_the_owner_and_the_end_user(shop):
    """An end user's request logs `user_id` as the app's owner (whose data it is) and `end_user_id`."""
    from types import SimpleNamespace

    from accounts.models import EndUser
    from config import logcontext

    end_user = EndUser.objects.select_related("app").get(pk=make_end_user(shop).pk)
    request = SimpleNamespace(user=end_user)
    assert logcontext._caller(request) == (str(shop.owner_id), str(end_user.id))
