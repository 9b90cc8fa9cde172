from config.routing import Router, route

from accounts.views import ApiKeyViewSet, LoginView, LogoutView, MeView, PasswordView, RefreshView, RegisterView

router = Router()
router.register("api-keys", ApiKeyViewSet, basename="api-key")

urlpatterns = [
    *route("register/", RegisterView.as_view(), name="register"),
    *route("login/", LoginView.as_view(), name="login"),
    *route("refresh/", RefreshView.as_view(), name="token-refresh"),
    *route("logout/", LogoutView.as_view(), name="logout"),
    *route("password/", PasswordView.as_view(), name="password"),
    *route("me/", MeView.as_view(), name="me"),
    *router.urls,
]
