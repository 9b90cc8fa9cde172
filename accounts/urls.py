from django.urls import path
from rest_framework.routers import SimpleRouter

from accounts.views import ApiKeyViewSet, LoginView, LogoutView, MeView, PasswordView, RefreshView, RegisterView

router = SimpleRouter()
router.register("api-keys", ApiKeyViewSet, basename="api-key")

urlpatterns = [
    path("register/", RegisterView.as_view(), name="register"),
    path("login/", LoginView.as_view(), name="login"),
    path("refresh/", RefreshView.as_view(), name="token-refresh"),
    path("logout/", LogoutView.as_view(), name="logout"),
    path("password/", PasswordView.as_view(), name="password"),
    path("me/", MeView.as_view(), name="me"),
    *router.urls,
]
