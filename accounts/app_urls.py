"""Routes of apps: the builder's (by id) and the end users' own (by slug), both under /api/apps/."""
from django.urls import path

from config.routing import Router, with_slashless

from accounts.app_views import (
    AppEndUserViewSet,
    AppInvitationViewSet,
    AppViewSet,
    EndUserLoginView,
    EndUserLogoutView,
    EndUserMeView,
    EndUserPasswordView,
    EndUserRefreshView,
    EndUserRegisterView,
)

router = Router()
router.register("apps", AppViewSet, basename="app")

urlpatterns = [
    *router.urls,  # with their slash-less twins
    *with_slashless([
        path("apps/<uuid:app_pk>/end-users/", AppEndUserViewSet.as_view({"get": "list"}), name="app-end-user-list"),
        path("apps/<uuid:app_pk>/end-users/<uuid:pk>/", AppEndUserViewSet.as_view(
            {"get": "retrieve", "patch": "partial_update", "delete": "destroy"}), name="app-end-user-detail"),
        path("apps/<uuid:app_pk>/invitations/", AppInvitationViewSet.as_view({"get": "list", "post": "create"}),
             name="app-invitation-list"),
        path("apps/<uuid:app_pk>/invitations/<uuid:pk>/", AppInvitationViewSet.as_view({"delete": "destroy"}),
             name="app-invitation-detail"),
        path("apps/<slug:slug>/auth/register/", EndUserRegisterView.as_view(), name="end-user-register"),
        path("apps/<slug:slug>/auth/login/", EndUserLoginView.as_view(), name="end-user-login"),
        path("apps/<slug:slug>/auth/refresh/", EndUserRefreshView.as_view(), name="end-user-refresh"),
        path("apps/<slug:slug>/auth/logout/", EndUserLogoutView.as_view(), name="end-user-logout"),
        path("apps/<slug:slug>/auth/me/", EndUserMeView.as_view(), name="end-user-me"),
        path("apps/<slug:slug>/auth/password/", EndUserPasswordView.as_view(), name="end-user-password"),
    ]),
]
