"""Junction settings, read from the environment.

With no variables set, Junction runs embedded: a SQLite file and an in-process Celery worker
(memory transport). Setting `CELERY_BROKER_URL` (and `DATABASE_URL`) switches to the
distributed mode, where secrets must come from the environment. `.env.example` lists every
variable.
"""
from __future__ import annotations

import base64
import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from dotenv import load_dotenv

from config.env import env_bool, env_float, env_int, env_list, env_str, local_secret, token

BASE_DIR = Path(__file__).resolve().parent.parent
load_dotenv(BASE_DIR / ".env")

# Embedded mode is "no broker configured": everything runs in one process.
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "memory://")
EMBEDDED = CELERY_BROKER_URL.startswith("memory://")
LOCAL_STATE_DIR = Path(env_str("JUNCTION_STATE_DIR", str(BASE_DIR / ".junction")))


def _required_secret(name: str, make: callable) -> str:
    value = env_str(name)
    if value:
        return value
    if EMBEDDED:
        return local_secret(LOCAL_STATE_DIR / name.lower(), make)
    raise ImproperlyConfigured(
        f"{name} is not set. Outside the embedded mode every process must share it: "
        f"set it in the environment or in .env (see .env.example)."
    )


SECRET_KEY = _required_secret("SECRET_KEY", token)
DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "accounts",
    "tasks_catalog",
    "integrations",
    "interactions",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The embedded mode has an API thread and worker threads writing to one file.
    DATABASES["default"]["OPTIONS"] = {"timeout": 20, "transaction_mode": "IMMEDIATE"}
    DATABASES["default"]["CONN_MAX_AGE"] = 0

AUTH_USER_MODEL = "accounts.User"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Serve static files straight from the apps in the embedded mode, without collectstatic.
WHITENOISE_USE_FINDERS = EMBEDDED or DEBUG

# --- REST framework -------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # JWT first: its WWW-Authenticate header turns "no credentials" into a 401, not a 403.
        "rest_framework_simplejwt.authentication.JWTAuthentication",
        "accounts.authentication.ApiKeyAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": env_int("JUNCTION_PAGE_SIZE", 50),
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "config.errors.api_exception_handler",
    "UNAUTHENTICATED_USER": None,
}
SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(minutes=env_int("JUNCTION_ACCESS_TOKEN_MINUTES", 15)),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=env_int("JUNCTION_REFRESH_TOKEN_DAYS", 7)),
    "USER_ID_FIELD": "id",
    "UPDATE_LAST_LOGIN": False,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Junction API",
    "DESCRIPTION": "Workflows as API endpoints.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI assets come from drf-spectacular-sidecar: no CDN, works offline.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
}

# --- Celery ---------------------------------------------------------------------------------
CELERY_RESULT_BACKEND = env_str(
    "CELERY_RESULT_BACKEND", "cache+memory://" if EMBEDDED else CELERY_BROKER_URL
)
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_BROKER_TRANSPORT_OPTIONS = (
    # kombu's memory transport polls once a second by default: every hop would cost a second.
    {"polling_interval": 0.005}
    if EMBEDDED
    else {}
)

# --- Junction -------------------------------------------------------------------------------
JUNCTION_ALLOW_REGISTRATION = env_bool("JUNCTION_ALLOW_REGISTRATION", True)
JUNCTION_MAX_TASKS = env_int("JUNCTION_MAX_TASKS", 100)
JUNCTION_MAX_DELAY = env_float("JUNCTION_MAX_DELAY", 300)
JUNCTION_MAX_RETRIES = env_int("JUNCTION_MAX_RETRIES", 10)
JUNCTION_DEFAULT_TASK_TIMEOUT = env_float("JUNCTION_DEFAULT_TASK_TIMEOUT", 30)
JUNCTION_MAX_TASK_TIMEOUT = env_float("JUNCTION_MAX_TASK_TIMEOUT", 600)
JUNCTION_SSRF_ALLOWED_NETWORKS = env_list("JUNCTION_SSRF_ALLOWED_NETWORKS", [])
JUNCTION_TWITTER_API_BASE = env_str("JUNCTION_TWITTER_API_BASE", "https://api.twitter.com")
JUNCTION_CODE_SANDBOX = env_str("JUNCTION_CODE_SANDBOX", "bwrap")
if JUNCTION_CODE_SANDBOX not in {"bwrap", "off"}:
    raise ImproperlyConfigured("JUNCTION_CODE_SANDBOX must be 'bwrap' or 'off'")


def _fernet_key() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


JUNCTION_ENCRYPTION_KEYS = env_list("JUNCTION_ENCRYPTION_KEYS") or [
    _required_secret("JUNCTION_ENCRYPTION_KEYS", _fernet_key)
]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
JUNCTION_MAX_WAIT = env_float("JUNCTION_MAX_WAIT", 60)
JUNCTION_SSE_MAX_SECONDS = env_float("JUNCTION_SSE_MAX_SECONDS", 600)
# Results only feed chords and `Prefer: wait`; the database keeps the real record.
CELERY_RESULT_EXPIRES = env_int("CELERY_RESULT_EXPIRES", 3600)
CELERY_TASK_DEFAULT_QUEUE = "default"
