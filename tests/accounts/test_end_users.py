"""Apps, their end users and the end users' own authentication (issue 10 items 1 and 6; SPEC §2.7).

Two builders, two apps each with their own groups and end users: every route is checked for
what it allows and for isolation both ways (app ↔ app, end user ↔ builder, end user ↔ end user).
"""
from __future__ import annotations

from datetime import timedelta

import jwt
import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from accounts import app_services
from accounts import services as account_services
from accounts.models import App, AppGroup, EndUser, Invitation
from interactions.models import Interaction
from tests.conftest import (
    PASSWORD,
    SIMPLE_TASKS,
    end_user_client,
    end_user_tokens,
    make_app,
    make_end_user,
    make_interaction,
)

pytestmark = pytest.mark.django_db
NEW_PASSWORD = "another-long-passphrase-42"


def error(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, (response.status_code, response.content[:300])
    body = response.json()
    assert set(body) == {"code", "message", "details"}, body
    if code is not None:
        assert body["code"] == code, body
    return body


def bearer(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


@pytest.fixture
def shop(user):
    """Alice's app `shop`: open sign-up, groups users (default), premium, staff."""
    return make_app(user, slug="shop", name="Shop", groups=["users", "premium", "staff"])


@pytest.fixture
def blog(other_user):
    """Bob's app `blog`: its own `users` group."""
    return make_app(other_user, slug="blog", name="Blog")


# --- apps (builder routes) --------------------------------------------------------------------

class TestApps:
    def test_create_makes_the_users_group_the_default(self, api):
        response = api.post("/api/apps/", {"name": "Mine", "slug": "mine", "signup": "invite"}, format="json")
        assert response.status_code == 201, response.content
        body = response.json()
        assert body["groups"] == ["users"] and body["default_group"] == "users"
        assert body["signup"] == "invite" and body["slug"] == "mine"
        assert body["login_url"] == "http://testserver/api/apps/mine/auth/login/"

    def test_create_with_groups_and_a_default(self, api):
        body = api.post("/api/apps/", {"name": "M", "slug": "m2", "groups": ["free", "pro"], "default_group": "free"},
                        format="json").json()
        assert body["groups"] == ["free", "pro"] and body["default_group"] == "free"

    def test_groups_without_a_default_get_users_as_default(self, api):
        body = api.post("/api/apps/", {"name": "M", "slug": "m3", "groups": ["pro"]}, format="json").json()
        assert body["groups"] == ["pro", "users"] and body["default_group"] == "users"

    def test_slugs_are_unique_across_builders(self, api, blog):
        body = error(api.post("/api/apps/", {"name": "x", "slug": "blog"}, format="json"), 400, "validation_error")
        assert "slug" in body["details"]

    @pytest.mark.parametrize("slug", ["Upper", "-dash", "dash-", "with space", "x" * 51, "a_b"])
    def test_bad_slugs_are_400(self, api, slug):
        body = error(api.post("/api/apps/", {"name": "x", "slug": slug}, format="json"), 400, "validation_error")
        assert "slug" in body["details"]

    def test_a_default_outside_the_groups_is_400(self, api):
        body = error(api.post("/api/apps/", {"name": "x", "slug": "x", "groups": ["a"], "default_group": "b"},
                              format="json"), 400)
        assert "default_group" in body["details"]

    def test_list_holds_only_the_builders_apps(self, api, shop, blog):
        assert [app["slug"] for app in api.get("/api/apps/").json()["results"]] == ["shop"]

    def test_another_builders_app_is_404(self, api, blog):
        error(api.get(f"/api/apps/{blog.id}/"), 404, "not_found")
        error(api.patch(f"/api/apps/{blog.id}/", {"signup": "open"}, format="json"), 404)
        error(api.delete(f"/api/apps/{blog.id}/"), 404)
        error(api.get(f"/api/apps/{blog.id}/end-users/"), 404)
        error(api.post(f"/api/apps/{blog.id}/invitations/", {"email": "x@example.com"}, format="json"), 404)
        assert App.objects.filter(pk=blog.pk).exists() and not Invitation.objects.exists()

    def test_patch_adds_and_removes_groups(self, api, shop):
        body = api.patch(f"/api/apps/{shop.id}/", {"groups": ["users", "premium", "gold"], "default_group": "gold"},
                         format="json").json()
        assert body["groups"] == ["gold", "premium", "users"] and body["default_group"] == "gold"

    def test_a_group_with_end_users_cannot_be_removed(self, api, shop):
        make_end_user(shop, group="staff")
        body = error(api.patch(f"/api/apps/{shop.id}/", {"groups": ["users"]}, format="json"), 409, "group_in_use")
        assert body["details"] == {"groups.staff": ["it has end users"]}
        assert AppGroup.objects.filter(app=shop, name="premium").exists()  # nothing changed

    def test_a_group_an_interaction_admits_cannot_be_removed(self, api, user, shop):
        make_interaction(user, name="vip").__class__.objects.filter(name="vip").update(
            app=shop, access="end_users", allowed_groups=["premium"])
        body = error(api.patch(f"/api/apps/{shop.id}/", {"groups": ["users", "staff"]}, format="json"), 409,
                     "group_in_use")
        assert body["details"] == {"groups.premium": ["interaction 'vip' admits it"]}

    def test_delete_takes_end_users_along_and_gives_interactions_back_to_the_owner(self, api, user, shop):
        end_user = make_end_user(shop)
        interaction = make_interaction(user)
        Interaction.objects.filter(pk=interaction.pk).update(app=shop, access="end_users", allowed_groups=["staff"])
        assert api.delete(f"/api/apps/{shop.id}/").status_code == 204
        assert not EndUser.objects.filter(pk=end_user.pk).exists()
        interaction.refresh_from_db()
        assert (interaction.app, interaction.access, interaction.allowed_groups) == (None, "owner", [])

    def test_a_run_key_cannot_manage_apps(self, user, shop):
        key = account_services.api_key_create(user=user, name="r", scope="run").key
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
        error(client.get("/api/apps/"), 403, "insufficient_scope")
        error(client.get(f"/api/apps/{shop.id}/end-users/"), 403, "insufficient_scope")


# --- end users, seen by the builder ------------------------------------------------------------

class TestBuilderManagesEndUsers:
    def test_list_is_filtered_by_group_and_activity(self, api, shop, blog):
        ann = make_end_user(shop, "ann@example.com", group="premium")
        make_end_user(shop, "ben@example.com")
        make_end_user(blog, "ann@example.com")  # the same address in another app: not listed
        body = api.get(f"/api/apps/{shop.id}/end-users/").json()
        assert body["count"] == 2
        assert set(body["results"][0]) == {"id", "email", "group", "is_active", "created_at"}
        premium = api.get(f"/api/apps/{shop.id}/end-users/?group=premium").json()["results"]
        assert [item["id"] for item in premium] == [str(ann.id)]
        app_services.end_user_update(end_user=ann, is_active=False)
        inactive = api.get(f"/api/apps/{shop.id}/end-users/?is_active=false").json()["results"]
        assert [item["email"] for item in inactive] == ["ann@example.com"]

    def test_regroup_applies_at_the_next_request(self, api, shop):
        end_user = make_end_user(shop)
        client = end_user_client(end_user)
        assert client.get("/api/apps/shop/auth/me/").json()["group"] == "users"
        response = api.patch(f"/api/apps/{shop.id}/end-users/{end_user.id}/", {"group": "premium"}, format="json")
        assert response.status_code == 200 and response.json()["group"] == "premium"
        assert client.get("/api/apps/shop/auth/me/").json()["group"] == "premium"  # same token

    def test_regroup_to_an_unknown_or_another_apps_group_is_400(self, api, shop, blog):
        end_user = make_end_user(shop)
        body = error(api.patch(f"/api/apps/{shop.id}/end-users/{end_user.id}/", {"group": "nope"}, format="json"), 400)
        assert "group" in body["details"]

    def test_disabling_revokes_every_token(self, api, shop):
        end_user = make_end_user(shop)
        tokens = end_user_tokens(end_user)
        api.patch(f"/api/apps/{shop.id}/end-users/{end_user.id}/", {"is_active": False}, format="json")
        error(bearer(tokens["access"]).get("/api/apps/shop/auth/me/"), 401)
        error(APIClient().post("/api/apps/shop/auth/refresh/", {"refresh": tokens["refresh"]}, format="json"), 401)
        error(APIClient().post("/api/apps/shop/auth/login/", {"email": end_user.email, "password": PASSWORD},
                               format="json"), 401)
        # Enabled again: a new login works, the old tokens stay dead.
        api.patch(f"/api/apps/{shop.id}/end-users/{end_user.id}/", {"is_active": True}, format="json")
        error(bearer(tokens["access"]).get("/api/apps/shop/auth/me/"), 401)
        assert end_user_client(end_user).get("/api/apps/shop/auth/me/").status_code == 200

    def test_delete(self, api, shop):
        end_user = make_end_user(shop)
        assert api.delete(f"/api/apps/{shop.id}/end-users/{end_user.id}/").status_code == 204
        assert not EndUser.objects.filter(pk=end_user.pk).exists()

    def test_another_apps_end_user_is_404_under_my_app(self, api, user, shop):
        mine_too = make_app(user, slug="second")
        end_user = make_end_user(mine_too)
        error(api.patch(f"/api/apps/{shop.id}/end-users/{end_user.id}/", {"is_active": False}, format="json"), 404)
        error(api.delete(f"/api/apps/{shop.id}/end-users/{end_user.id}/"), 404)
        assert EndUser.objects.get(pk=end_user.pk).is_active


# --- sign-up policies and invitations ----------------------------------------------------------

def register(slug: str, email: str, invitation: str | None = None, password: str = PASSWORD):
    body = {"email": email, "password": password}
    if invitation is not None:
        body["invitation"] = invitation
    return APIClient().post(f"/api/apps/{slug}/auth/register/", body, format="json")


class TestSignup:
    def test_open_signup_joins_the_default_group(self, shop):
        response = register("shop", "New@Example.com")
        assert response.status_code == 201, response.content
        body = response.json()
        assert set(body) == {"id", "email", "group"}
        assert body["email"] == "new@example.com" and body["group"] == "users"
        assert EndUser.objects.get(pk=body["id"]).password != PASSWORD  # hashed

    def test_an_email_is_unique_per_app_whatever_its_case(self, shop, blog):
        assert register("shop", "dup@example.com").status_code == 201
        body = error(register("shop", "DUP@example.com"), 400, "validation_error")
        assert "email" in body["details"]
        assert register("blog", "dup@example.com").status_code == 201  # another app: another account

    def test_a_weak_password_is_400(self, shop):
        assert "password" in error(register("shop", "w@example.com", password="123"), 400)["details"]

    def test_closed_signup_is_403(self, user):
        make_app(user, slug="closed-app", signup="closed")
        error(register("closed-app", "x@example.com"), 403, "signup_closed")
        assert not EndUser.objects.exists()

    def test_unknown_app_is_404(self, db):
        error(register("no-such-app", "x@example.com"), 404, "not_found")

    def test_invite_only_needs_a_valid_invitation(self, api, user):
        app = make_app(user, slug="club", signup="invite")
        error(register("club", "guest@example.com"), 403, "invitation_required")
        error(register("club", "guest@example.com", "ji_made-up"), 403, "invitation_invalid")
        response = api.post(f"/api/apps/{app.id}/invitations/", {"email": "Guest@example.com"}, format="json")
        assert response.status_code == 201
        token = response.json()["token"]
        error(register("club", "other@example.com", token), 403, "invitation_invalid")  # another address
        assert register("club", "guest@example.com", token).status_code == 201
        error(register("club", "guest2@example.com", token), 403, "invitation_invalid")  # single use
        listed = api.get(f"/api/apps/{app.id}/invitations/").json()["results"]
        assert listed[0]["used_at"] is not None and "token" not in listed[0]
        assert Invitation.objects.get().hashed_token != token  # stored hashed

    def test_an_expired_invitation_is_refused(self, user):
        app = make_app(user, slug="club2", signup="invite")
        created = app_services.invitation_create(app=app, email="late@example.com")
        Invitation.objects.filter(pk=created.invitation.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
        error(register("club2", "late@example.com", created.token), 403, "invitation_invalid")

    def test_an_invitation_works_only_in_its_app(self, user, shop):
        app = make_app(user, slug="club3", signup="invite")
        created = app_services.invitation_create(app=shop, email="g@example.com")
        error(register("club3", "g@example.com", created.token), 403, "invitation_invalid")
        assert app.end_users.count() == 0

    def test_a_revoked_invitation_is_refused(self, api, user):
        app = make_app(user, slug="club4", signup="invite")
        created = app_services.invitation_create(app=app, email="g@example.com")
        assert api.delete(f"/api/apps/{app.id}/invitations/{created.invitation.id}/").status_code == 204
        error(register("club4", "g@example.com", created.token), 403, "invitation_invalid")


# --- the end user's own authentication ---------------------------------------------------------

class TestEndUserAuth:
    def test_login_gives_tokens_with_app_end_user_and_group(self, shop):
        end_user = make_end_user(shop, group="premium")
        tokens = end_user_tokens(end_user)
        claims = jwt.decode(tokens["access"], options={"verify_signature": False})
        assert claims["app"] == str(shop.id) and claims["end_user"] == str(end_user.id)
        assert claims["group"] == "premium" and claims["token_type"] == "enduser_access"
        assert "user_id" not in claims

    def test_me(self, shop):
        end_user = make_end_user(shop, "me@example.com")
        body = end_user_client(end_user).get("/api/apps/shop/auth/me/").json()
        assert body == {"id": str(end_user.id), "email": "me@example.com", "group": "users"}

    def test_wrong_password_and_unknown_email_are_the_same_401(self, shop):
        make_end_user(shop, "known@example.com")
        wrong = error(APIClient().post("/api/apps/shop/auth/login/", {"email": "known@example.com", "password": "no"},
                                       format="json"), 401)
        unknown = error(APIClient().post("/api/apps/shop/auth/login/", {"email": "who@example.com", "password": "no"},
                                         format="json"), 401)
        assert wrong == unknown

    def test_refresh_rotates(self, shop):
        tokens = end_user_tokens(make_end_user(shop))
        response = APIClient().post("/api/apps/shop/auth/refresh/", {"refresh": tokens["refresh"]}, format="json")
        assert response.status_code == 200
        fresh = response.json()
        assert bearer(fresh["access"]).get("/api/apps/shop/auth/me/").status_code == 200
        error(APIClient().post("/api/apps/shop/auth/refresh/", {"refresh": tokens["refresh"]}, format="json"), 401)

    def test_logout_blacklists_the_refresh_token(self, shop):
        tokens = end_user_tokens(make_end_user(shop))
        assert APIClient().post("/api/apps/shop/auth/logout/", {"refresh": tokens["refresh"]},
                                format="json").status_code == 204
        error(APIClient().post("/api/apps/shop/auth/refresh/", {"refresh": tokens["refresh"]}, format="json"), 401)

    def test_password_change_revokes_old_tokens(self, shop):
        end_user = make_end_user(shop)
        old = end_user_tokens(end_user)
        response = bearer(old["access"]).post("/api/apps/shop/auth/password/", {"old": PASSWORD, "new": NEW_PASSWORD},
                                              format="json")
        assert response.status_code == 200
        error(bearer(old["access"]).get("/api/apps/shop/auth/me/"), 401, "token_revoked")
        error(APIClient().post("/api/apps/shop/auth/refresh/", {"refresh": old["refresh"]}, format="json"), 401)
        assert bearer(response.json()["access"]).get("/api/apps/shop/auth/me/").status_code == 200
        assert end_user_client(end_user, NEW_PASSWORD).get("/api/apps/shop/auth/me/").status_code == 200

    def test_password_change_with_a_wrong_old_password_is_400(self, shop):
        client = end_user_client(make_end_user(shop))
        body = error(client.post("/api/apps/shop/auth/password/", {"old": "nope", "new": NEW_PASSWORD}, format="json"), 400)
        assert "old" in body["details"]


# --- isolation both ways ------------------------------------------------------------------------

BUILDER_ROUTES = [("get", "/api/auth/me/"), ("get", "/api/interactions/"), ("post", "/api/interactions/"),
                  ("get", "/api/sessions/"), ("get", "/api/integrations/"), ("get", "/api/apps/"),
                  ("post", "/api/auth/api-keys/"), ("get", "/api/task-types/"), ("get", "/api/providers/")]
END_USER_ROUTES = [("get", "auth/me/"), ("post", "auth/password/"), ("get", "sessions/"), ("get", "integrations/")]


def _builder_routes():
    from tests.accounts.test_api_key_scopes import CREDENTIAL_FREE
    from tests.test_hostile_input import ROUTES

    return [(method, path) for method, path in ROUTES
            if path not in CREDENTIAL_FREE and "<slug:slug>" not in path and not path.endswith("/run/")]


@pytest.mark.parametrize("method,path", _builder_routes())
def test_an_end_users_token_is_401_on_every_builder_route(user, method, path):
    """Every route but the credential-free ones, the end users' own and the run route (which
    decides by the interaction's access: tests/interactions/test_end_user_runs.py)."""
    from tests.test_hostile_input import concrete, route_objects

    objects = route_objects(user)
    client = end_user_client(make_end_user(objects["app"]))
    response = getattr(client, method)(concrete(path, objects), {"name": "x"}, format="json",
                                       HTTP_ACCEPT="application/json")
    assert response.status_code == 401, (method, path, response.status_code)
    assert set(response.json()) == {"code", "message", "details"}


class TestIsolation:
    @pytest.mark.parametrize("method,path", BUILDER_ROUTES)
    def test_an_end_users_token_is_401_on_builder_routes(self, shop, method, path):
        client = end_user_client(make_end_user(shop))
        error(getattr(client, method)(path, {"name": "x", "tasks": SIMPLE_TASKS}, format="json"), 401)

    def test_an_end_users_token_is_401_on_builder_object_routes(self, user, shop):
        interaction = make_interaction(user, active=True)
        client = end_user_client(make_end_user(shop))
        error(client.get(f"/api/interactions/{interaction.id}/"), 401)
        error(client.get(f"/api/apps/{shop.id}/end-users/"), 401)
        error(client.patch(f"/api/apps/{shop.id}/", {"signup": "closed"}, format="json"), 401)
        assert App.objects.get(pk=shop.pk).signup == "open"

    @pytest.mark.parametrize("method,path", END_USER_ROUTES)
    def test_another_apps_token_is_401(self, shop, blog, method, path):
        client = end_user_client(make_end_user(blog))
        body = error(getattr(client, method)(f"/api/apps/shop/{path}", {}, format="json"), 401, "wrong_app")
        assert "another app" in body["message"]

    def test_another_apps_refresh_token_is_401(self, shop, blog):
        tokens = end_user_tokens(make_end_user(blog))
        error(APIClient().post("/api/apps/shop/auth/refresh/", {"refresh": tokens["refresh"]}, format="json"), 401)
        error(APIClient().post("/api/apps/shop/auth/logout/", {"refresh": tokens["refresh"]}, format="json"), 401)

    @pytest.mark.parametrize("method,path", END_USER_ROUTES)
    def test_builder_credentials_are_401_on_end_user_routes(self, user, api, shop, method, path):
        key = account_services.api_key_create(user=user, name="k").key
        with_key = APIClient()
        with_key.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
        for client in (api, with_key, APIClient()):
            error(getattr(client, method)(f"/api/apps/shop/{path}", {}, format="json"), 401)

    def test_a_builder_refresh_token_is_refused_by_the_end_user_refresh(self, user, shop):
        refresh = account_services.token_pair(user=user)["refresh"]
        error(APIClient().post("/api/apps/shop/auth/refresh/", {"refresh": refresh}, format="json"), 401)

    def test_an_end_user_refresh_token_is_refused_by_the_builder_refresh(self, shop):
        tokens = end_user_tokens(make_end_user(shop))
        error(APIClient().post("/api/auth/refresh/", {"refresh": tokens["refresh"]}, format="json"), 401)

    def test_a_token_forged_with_the_builders_key_is_refused(self, user, shop):
        """The end-user type alone is not enough: end users' tokens have their own signing key."""
        from django.conf import settings

        end_user = make_end_user(shop)
        claims = jwt.decode(end_user_tokens(end_user)["access"], options={"verify_signature": False})
        forged = jwt.encode(claims, settings.SECRET_KEY, algorithm="HS256")
        error(bearer(forged).get("/api/apps/shop/auth/me/"), 401, "token_not_valid")

    def test_end_users_of_one_app_do_not_see_each_other(self, shop):
        ann, ben = make_end_user(shop), make_end_user(shop)
        assert end_user_client(ann).get("/api/apps/shop/auth/me/").json()["id"] == str(ann.id)
        assert end_user_client(ben).get("/api/apps/shop/auth/me/").json()["id"] == str(ben.id)


# --- throttles ------------------------------------------------------------------------------------

class TestThrottles:
    def test_failed_logins_are_throttled_per_email_of_the_app(self, settings, shop, blog):
        settings.JUNCTION_THROTTLE_LOGIN = "3/min"
        end_user = make_end_user(shop, "t@example.com")
        make_end_user(blog, "t@example.com")
        client = APIClient()
        for _ in range(3):
            error(client.post("/api/apps/shop/auth/login/", {"email": "t@example.com", "password": "bad"},
                              format="json"), 401)
        response = client.post("/api/apps/shop/auth/login/", {"email": end_user.email, "password": PASSWORD},
                               format="json")
        error(response, 429, "throttled")
        assert int(response["Retry-After"]) >= 1
        # Another app's windows are its own (a fresh address: the address window is full too).
        other = APIClient(REMOTE_ADDR="10.0.0.9")
        assert other.post("/api/apps/blog/auth/login/", {"email": "t@example.com", "password": PASSWORD},
                          format="json").status_code == 200

    def test_end_user_failures_do_not_lock_out_builders(self, settings, user, shop):
        settings.JUNCTION_THROTTLE_LOGIN = "2/min"
        for _ in range(3):
            APIClient().post("/api/apps/shop/auth/login/", {"email": "alice", "password": "bad"}, format="json")
        assert APIClient().post("/api/auth/login/", {"username": "alice", "password": PASSWORD},
                                format="json").status_code == 200

    def test_registrations_are_throttled_per_address(self, settings, shop):
        settings.JUNCTION_THROTTLE_REGISTER = "2/hour"
        assert register("shop", "r1@example.com").status_code == 201
        assert register("shop", "r2@example.com").status_code == 201
        error(register("shop", "r3@example.com"), 429, "throttled")
        assert not EndUser.objects.filter(email="r3@example.com").exists()


# --- admin ------------------------------------------------------------------------------------------

class TestAdmin:
    def test_builders_list_regroup_and_disable_end_users(self, admin_client, shop):
        end_user = make_end_user(shop, "adm@example.com")
        tokens = end_user_tokens(end_user)
        page = admin_client.get("/admin/accounts/enduser/")
        assert page.status_code == 200 and "adm@example.com" in page.content.decode()
        premium = AppGroup.objects.get(app=shop, name="premium")
        response = admin_client.post(f"/admin/accounts/enduser/{end_user.pk}/change/",
                                     {"group": premium.pk, "is_active": ""})
        assert response.status_code == 302, response.content[:500]
        end_user.refresh_from_db()
        assert end_user.group == premium and not end_user.is_active
        error(bearer(tokens["access"]).get("/api/apps/shop/auth/me/"), 401)  # disabling revoked the tokens
        assert end_user.password not in admin_client.get(f"/admin/accounts/enduser/{end_user.pk}/change/").content.decode()

    def test_invite_in_the_admin_shows_the_token_once(self, admin_client, user):
        app = make_app(user, slug="adm-club", signup="invite")
        response = admin_client.post("/admin/accounts/invitation/add/", {"app": app.pk, "email": "i@example.com"},
                                     follow=True)
        text = response.content.decode()
        assert "Invitation token for i@example.com" in text
        token = text.split("(shown once): ")[1].split("<")[0].strip()
        assert register("adm-club", "i@example.com", token).status_code == 201

    def test_deleting_an_app_in_the_admin_frees_its_interactions(self, admin_client, user, shop):
        interaction = make_interaction(user)
        Interaction.objects.filter(pk=interaction.pk).update(app=shop, access="public")
        response = admin_client.post(f"/admin/accounts/app/{shop.pk}/delete/", {"post": "yes"})
        assert response.status_code == 302
        interaction.refresh_from_db()
        assert interaction.app is None and interaction.access == "owner"
