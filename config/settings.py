"""Junction settings, read from the environment.

With no variables set, Junction runs embedded: a SQLite file and an in-process Celery worker
(memory transport). Setting `CELERY_BROKER_URL` (and `DATABASE_URL`) switches to the
distributed mode, where secrets must come from the environment. `.env.example` lists every
variable.
"""
from __future__ import annotations

import base64
import os
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import dj_database_url
from kombu import Queue as KombuQueue
from django.core.exceptions import ImproperlyConfigured
from dotenv import load_dotenv

from config import timestamps
from config.env import env_bool, env_float, env_int, env_list, env_rate, env_str, local_secret, token
from config.queues import Queue

BASE_DIR = Path(__file__).resolve().parent.parent
load_dotenv(BASE_DIR / ".env")

# Embedded mode is "no broker configured": everything runs in one process.
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "memory://")
EMBEDDED = CELERY_BROKER_URL.startswith("memory://")
LOCAL_STATE_DIR = Path(env_str("JUNCTION_STATE_DIR", str(BASE_DIR / ".junction")))


def _required_secret(name: str, make: Callable[[], str]) -> str:
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
    # Outermost: every request gets a log context and is counted, whatever answers it.
    "config.logcontext.RequestContextMiddleware",
    "config.metrics.RequestMetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "config.limits.RequestSizeLimitMiddleware",
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
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # The same backend, with a health check that costs no round trip (config/pgbackend/base.py).
    DATABASES["default"]["ENGINE"] = "config.pgbackend"
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
_PAGE_SIZE = env_int("JUNCTION_PAGE_SIZE", 50, minimum=1, maximum=10_000)
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # JWT first: its WWW-Authenticate header turns "no credentials" into a 401, not a 403.
        "accounts.authentication.RevocableJWTAuthentication",
        "accounts.authentication.ApiKeyAuthentication",
        # Last: a user logged in to the admin uses the API from the same origin (the canvas,
        # the browsable API), with Django's CSRF check on every unsafe method. A request that
        # carries a token or a key is decided by the two above (docs/security.md).
        "rest_framework.authentication.SessionAuthentication",
    ],
    # ApiKeyScope: a key of scope `run` reaches only the run and session routes (docs/security.md).
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated", "accounts.permissions.ApiKeyScope"],
    # JSON only (SPEC §2), bounded in size and depth: config/parsers.py.
    "DEFAULT_PARSER_CLASSES": ["config.parsers.BoundedJSONParser"],
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
    # One timestamp format everywhere (config/timestamps.py, docs/api.md).
    "DATETIME_FORMAT": timestamps.FORMAT,
    # Lists: `page`, `page_size`, `ordering`, `search` and django-filter fields (config/listing.py).
    "DEFAULT_PAGINATION_CLASS": "config.listing.Pagination",
    "PAGE_SIZE": _PAGE_SIZE,
    "DEFAULT_FILTER_BACKENDS": [
        "config.listing.Filters", "config.listing.Ordering", "config.listing.Search",
    ],
    "DEFAULT_SCHEMA_CLASS": "config.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "config.api_errors.api_exception_handler",
    "UNAUTHENTICATED_USER": None,
}
# The largest `?page_size=` a list accepts (400 past it).
JUNCTION_MAX_PAGE_SIZE = env_int("JUNCTION_MAX_PAGE_SIZE", 500, minimum=_PAGE_SIZE, maximum=10_000)
SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(minutes=env_int("JUNCTION_ACCESS_TOKEN_MINUTES", 15)),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=env_int("JUNCTION_REFRESH_TOKEN_DAYS", 7)),
    "USER_ID_FIELD": "id",
    "UPDATE_LAST_LOGIN": False,
    "TOKEN_OBTAIN_SERIALIZER": "accounts.serializers.LoginSerializer",
    "TOKEN_REFRESH_SERIALIZER": "accounts.serializers.TokenRefreshSerializer",
    # A refresh answers a new refresh token too and blacklists the one it used (docs/security.md).
    "ROTATE_REFRESH_TOKENS": True,
    "BLACKLIST_AFTER_ROTATION": True,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Junction API",
    "DESCRIPTION": (
        "Workflows as API endpoints. Conventions (docs/api.md): every error is `{code, message, details}` "
        "and each operation lists the statuses it can answer; routes answer with or without their "
        "trailing slash; paginated lists take `page`, `page_size`, `ordering` and `search`; timestamps "
        "are ISO 8601 in UTC with microseconds and `Z`; values must have the JSON type shown; a replayed "
        "idempotent run says so with `Idempotent-Replayed: true`."
    ),
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI assets come from drf-spectacular-sidecar: no CDN, works offline.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # 3.1: JSON Schema 2020-12, so blanks (`null`), `propertyNames` and typed definitions are exact.
    "OAS_VERSION": "3.1.0",
    # Each route is also answered without its trailing slash; the document shows it once.
    "PREPROCESSING_HOOKS": ["config.routing.openapi_canonical_paths"],
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "config.openapi.exact_strings",
                            "config.openapi.resource_links"],
    # `{type: [..., "null"]}` rather than a separate `nullable` (what 3.1 means).
    "ENUM_ADD_EXPLICIT_BLANK_NULL_CHOICE": False,
}

# --- Celery ---------------------------------------------------------------------------------
CELERY_RESULT_BACKEND = env_str(
    "CELERY_RESULT_BACKEND", "cache+memory://" if EMBEDDED else CELERY_BROKER_URL
)
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
# Crash safety. Each of these is needed for "a worker killed mid-task loses nothing":
# - acks late: the message is acknowledged after the task ran, so a crash mid-task redelivers it;
CELERY_TASK_ACKS_LATE = True
# - reject on worker lost: late acks alone do not bring back a task whose pool process died
#   (SIGKILL, OOM); this requeues it. Requeues are unbounded, hence the attempt counter that the
#   executor keeps in PostgreSQL (JUNCTION_MAX_WORKER_LOSSES);
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# - prefetch 1: a worker holds only the message it runs, so a long task does not strand others
#   behind it in a dead worker's buffer;
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# - the message is published only after the creating transaction commits (on_commit in
#   interactions/sessions.py), and the sweeper (interactions/sweeper.py) resumes what is lost.
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Keep a worker's database connection across tasks (Celery's Django fixup otherwise closes it
# after every task, and each task pays a new PostgreSQL connection). config/celery.py still
# drops a connection that is broken or older than CONN_MAX_AGE before and after each task.
CELERY_DB_REUSE_MAX = env_int("CELERY_DB_REUSE_MAX", 1000)
CELERY_TASK_DEFAULT_QUEUE = str(Queue.DEFAULT)
# Every Junction queue, so that `celery -A config worker` without -Q consumes them all; run
# `-Q code` workers to give custom code dedicated machines.
CELERY_TASK_QUEUES = tuple(KombuQueue(str(queue)) for queue in Queue)

JUNCTION_MAX_TASK_TIMEOUT = env_float("JUNCTION_MAX_TASK_TIMEOUT", 600, minimum=1, maximum=86400)
JUNCTION_DEFAULT_TASK_TIMEOUT = env_float(
    "JUNCTION_DEFAULT_TASK_TIMEOUT", 30, minimum=0.1, maximum=JUNCTION_MAX_TASK_TIMEOUT
)
# A task gets SIGKILLed this long after its soft time limit (prefork workers).
JUNCTION_HARD_TIMEOUT_GRACE = env_float("JUNCTION_HARD_TIMEOUT_GRACE", 5)
# A running task's claim lasts its timeout + the hard grace + this; then another delivery
# may take it over.
JUNCTION_LEASE_GRACE = env_float("JUNCTION_LEASE_GRACE", 5)
# A worker step that ends a link of a chain runs the next link itself, when it is of the same
# kind (queue, slot), instead of a broker hop (docs/execution.md, "Chains run in one step"): a
# link that can do so is sent with this much time (its Celery time limits) for the links it
# runs, and runs another only while that link's timeout fits in what is left. 0 turns it off.
# At most JUNCTION_MAX_TASK_TIMEOUT, which the visibility timeout below covers.
JUNCTION_CHAIN_STEP_SECONDS = env_float("JUNCTION_CHAIN_STEP_SECONDS", min(60.0, JUNCTION_MAX_TASK_TIMEOUT),
                                        minimum=0, maximum=JUNCTION_MAX_TASK_TIMEOUT)
# On Redis a message held by a worker that died outright comes back only after the visibility
# timeout. It must exceed every task's hard time limit, or a task still running would be
# delivered a second time: checked here, at start-up.
CELERY_VISIBILITY_TIMEOUT = env_int("CELERY_VISIBILITY_TIMEOUT", 3600)
if not EMBEDDED and CELERY_VISIBILITY_TIMEOUT <= JUNCTION_MAX_TASK_TIMEOUT + JUNCTION_HARD_TIMEOUT_GRACE:
    raise ImproperlyConfigured(
        f"CELERY_VISIBILITY_TIMEOUT ({CELERY_VISIBILITY_TIMEOUT} s) must exceed "
        f"JUNCTION_MAX_TASK_TIMEOUT + JUNCTION_HARD_TIMEOUT_GRACE "
        f"({JUNCTION_MAX_TASK_TIMEOUT + JUNCTION_HARD_TIMEOUT_GRACE:g} s)"
    )
CELERY_BROKER_TRANSPORT_OPTIONS = (
    # kombu's memory transport polls once a second by default: every hop would cost a second.
    {"polling_interval": 0.005}
    if EMBEDDED
    else {
        "visibility_timeout": CELERY_VISIBILITY_TIMEOUT,
        # kombu looks for unacked messages of dead workers this often (default ~100 s). It
        # scans only on every `unacked_restore_throttle`-th tick (default 10): 1 makes the
        # interval the real period, instead of 10 times it.
        "unacked_restore_interval": env_float("CELERY_UNACKED_RESTORE_INTERVAL", 30),
        "unacked_restore_throttle": 1,
    }
)
CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS = {"retry_policy": {"timeout": 5.0}}
CELERY_BEAT_SCHEDULE = {
    "sweep-sessions": {"task": "junction.sweep", "schedule": env_float("JUNCTION_SWEEP_INTERVAL", 15)},
}

# --- Cache: rate-limit windows and metrics counters -----------------------------------------
# Shared by every process: Redis outside the embedded mode (the result backend's server unless
# CACHE_URL says otherwise), process memory in the embedded mode (one process).
_CACHE_URL = env_str("CACHE_URL", None if EMBEDDED else CELERY_RESULT_BACKEND)
CACHES = {
    "default": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": _CACHE_URL,
         "KEY_PREFIX": "junction", "OPTIONS": {"socket_timeout": 2, "socket_connect_timeout": 2}}
        if _CACHE_URL and _CACHE_URL.startswith(("redis://", "rediss://"))
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "junction"}
    )
}

# --- Junction -------------------------------------------------------------------------------
# Per-user rate limits on runs: plan=requests/period (s, min, hour); users have a `plan`.
JUNCTION_RATE_PLANS = dict(
    item.split("=", 1) for item in env_list("JUNCTION_RATE_PLANS", ["default=60000/min", "unlimited=none"])
)
JUNCTION_ALLOW_REGISTRATION = env_bool("JUNCTION_ALLOW_REGISTRATION", True)

# --- Access: throttles, per-user concurrency, proxies, CORS (docs/security.md) ----------------
INSTALLED_APPS.append("rest_framework_simplejwt.token_blacklist")
# Failed logins per username and per client address; registrations per address; per user:
# trying a task type, retrying a session, opening an event stream. "N/s|min|hour" or "none".
JUNCTION_THROTTLE_LOGIN = env_rate("JUNCTION_THROTTLE_LOGIN", "10/min")
JUNCTION_THROTTLE_REGISTER = env_rate("JUNCTION_THROTTLE_REGISTER", "20/hour")
JUNCTION_THROTTLE_TASK_TEST = env_rate("JUNCTION_THROTTLE_TASK_TEST", "60/min")
JUNCTION_THROTTLE_RETRY = env_rate("JUNCTION_THROTTLE_RETRY", "60/min")
JUNCTION_THROTTLE_EVENTS = env_rate("JUNCTION_THROTTLE_EVENTS", "120/min")
# Anonymous calls of public interactions per client address (docs/end-users.md).
JUNCTION_THROTTLE_PUBLIC_RUN = env_rate("JUNCTION_THROTTLE_PUBLIC_RUN", "60/min")
# How long an invitation to an app's sign-up stays valid.
JUNCTION_INVITATION_DAYS = env_int("JUNCTION_INVITATION_DAYS", 7, minimum=1, maximum=365)
# Most sessions one user may have queued or running at once (429 past it, nothing created).
JUNCTION_MAX_ACTIVE_SESSIONS = env_int("JUNCTION_MAX_ACTIVE_SESSIONS", 1000, minimum=1, maximum=1_000_000)
# Most tasks of slow types (TaskType.slow: http_request, send_email, send_tweet, code) one user may
# have running at once; more wait for a slot (docs/limits.md, interactions/slots.py).
JUNCTION_MAX_SLOW_TASKS_PER_USER = env_int("JUNCTION_MAX_SLOW_TASKS_PER_USER", 64, minimum=1, maximum=100_000)
# Reverse proxies in front of the API that append to X-Forwarded-For: the client address of the
# throttles is the one they saw. 0: REMOTE_ADDR, and X-Forwarded-For (client-chosen) is ignored.
REST_FRAMEWORK["NUM_PROXIES"] = env_int("JUNCTION_NUM_PROXIES", 0, minimum=0, maximum=10)
# CORS for browser clients on other origins: off unless origins are listed.
CORS_ALLOWED_ORIGINS = env_list("CORS_ALLOWED_ORIGINS", [])
if CORS_ALLOWED_ORIGINS:
    INSTALLED_APPS.append("corsheaders")
    MIDDLEWARE.insert(MIDDLEWARE.index("django.middleware.common.CommonMiddleware"),
                      "corsheaders.middleware.CorsMiddleware")
    CORS_URLS_REGEX = r"^/api/.*$"
    CORS_ALLOW_HEADERS = ("accept", "authorization", "content-type", "idempotency-key", "last-event-id", "prefer")
    CORS_EXPOSE_HEADERS = ("Location", "Retry-After", "Idempotent-Replayed", "Preference-Applied")
JUNCTION_MAX_TASKS = env_int("JUNCTION_MAX_TASKS", 100, minimum=1, maximum=1000)
JUNCTION_MAX_DELAY = env_float("JUNCTION_MAX_DELAY", 300, minimum=0, maximum=86400)
JUNCTION_MAX_RETRIES = env_int("JUNCTION_MAX_RETRIES", 10, minimum=0, maximum=100)
JUNCTION_SSRF_ALLOWED_NETWORKS = env_list("JUNCTION_SSRF_ALLOWED_NETWORKS", [])
JUNCTION_TWITTER_API_BASE: str = env_str("JUNCTION_TWITTER_API_BASE", "https://api.twitter.com")
JUNCTION_CODE_SANDBOX = env_str("JUNCTION_CODE_SANDBOX", "bwrap")
if JUNCTION_CODE_SANDBOX not in {"bwrap", "off"}:
    raise ImproperlyConfigured("JUNCTION_CODE_SANDBOX must be 'bwrap' or 'off'")


def _fernet_key() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


JUNCTION_ENCRYPTION_KEYS = env_list("JUNCTION_ENCRYPTION_KEYS") or [
    _required_secret("JUNCTION_ENCRYPTION_KEYS", _fernet_key)
]

# --- Logging (docs/operations.md) ----------------------------------------------------------
# LOG_FORMAT=json: one JSON object a line (python-json-logger), the production default;
# LOG_FORMAT=text: plain lines, the embedded mode's default. Either way each line carries the
# request, user, interaction, session and task it belongs to (config/logcontext.py).
LOG_FORMAT = env_str("LOG_FORMAT", "text" if EMBEDDED else "json")
if LOG_FORMAT not in {"json", "text"}:
    raise ImproperlyConfigured(f"LOG_FORMAT must be 'json' or 'text', got {LOG_FORMAT!r}")
LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "config.logcontext.ContextFilter"}},
    "formatters": {
        "text": {"()": "config.logcontext.TextFormatter",
                 "format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "pythonjsonlogger.json.JsonFormatter",
                 "format": "%(levelname)s %(name)s %(process)d %(message)s",
                 "rename_fields": {"levelname": "level", "name": "logger", "process": "pid"},
                 "timestamp": "time"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["context"]}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # At DEBUG they log the tokens they obtain, secrets included (docs/security.md).
        "requests_oauthlib": {"level": "WARNING"},
        "oauthlib": {"level": "WARNING"},
    },
}

JUNCTION_MAX_WAIT = env_float("JUNCTION_MAX_WAIT", 60, minimum=0, maximum=3600)
JUNCTION_SSE_MAX_SECONDS = env_float("JUNCTION_SSE_MAX_SECONDS", 600, minimum=1, maximum=86400)
# Session events (interactions/events.py): Redis pub/sub for `Prefer: wait` and `/events`; the
# result backend's Redis unless set; none in the embedded mode (an in-process bus).
_EVENTS_DEFAULT = CELERY_RESULT_BACKEND if CELERY_RESULT_BACKEND.startswith(("redis://", "rediss://")) else ""
JUNCTION_EVENTS_URL = env_str("JUNCTION_EVENTS_URL", _EVENTS_DEFAULT)
# How long a session's end stays readable after it was published (closes the subscribe race).
JUNCTION_EVENTS_TTL = env_float("JUNCTION_EVENTS_TTL", 120)
# How long an API process may keep a user, API key or interaction it read for a run call
# (config/hotcache.py: changes are announced at once; this bounds a missed announcement). 0: off.
JUNCTION_HOT_CACHE_SECONDS = env_float("JUNCTION_HOT_CACHE_SECONDS", 30, minimum=0, maximum=3600)
# `/events`: a keep-alive comment this often, a re-read of the database this often (a safety
# net under lossy pub/sub), and this often while no task event has been pushed yet.
JUNCTION_SSE_KEEPALIVE_SECONDS = env_float("JUNCTION_SSE_KEEPALIVE_SECONDS", 15)
JUNCTION_SSE_RESYNC_SECONDS = env_float("JUNCTION_SSE_RESYNC_SECONDS", 5)
JUNCTION_SSE_POLL_SECONDS = env_float("JUNCTION_SSE_POLL_SECONDS", 0.2)
# ASGI (config/asgi.py): long-lived threads per server process that run the synchronous code.
JUNCTION_ASGI_THREADS = env_int("JUNCTION_ASGI_THREADS", 8)
# Results only feed chords and `Prefer: wait`; the database keeps the real record.
CELERY_RESULT_EXPIRES = env_int("CELERY_RESULT_EXPIRES", 3600)
# Reliability (see docs/reliability.md): attempts, stalls, deadlines, sizes.
JUNCTION_MAX_WORKER_LOSSES = env_int("JUNCTION_MAX_WORKER_LOSSES", 3)
JUNCTION_STALL_SECONDS = env_float("JUNCTION_STALL_SECONDS", 60)
JUNCTION_MAX_RESUMES = env_int("JUNCTION_MAX_RESUMES", 3)
# Limits on what callers send and what tasks make (docs/limits.md). Each has a hard maximum:
# start-up stops on a value past it.
# The longest `deadline_seconds` an interaction may ask for; the default deadline is within it.
JUNCTION_MAX_SESSION_DEADLINE = env_int("JUNCTION_MAX_SESSION_DEADLINE", 86400, minimum=1, maximum=30 * 86400)
JUNCTION_SESSION_DEADLINE = env_float(
    "JUNCTION_SESSION_DEADLINE", 3600, minimum=1, maximum=JUNCTION_MAX_SESSION_DEADLINE
)
JUNCTION_MAX_REQUEST_BYTES = env_int("JUNCTION_MAX_REQUEST_BYTES", 1024 * 1024, minimum=1024, maximum=64 * 1024 * 1024)
JUNCTION_MAX_OUTPUT_BYTES = env_int("JUNCTION_MAX_OUTPUT_BYTES", 1024 * 1024, minimum=1024, maximum=64 * 1024 * 1024)
JUNCTION_MAX_SESSION_BYTES = env_int(
    "JUNCTION_MAX_SESSION_BYTES", 16 * 1024 * 1024, minimum=1024, maximum=1024 * 1024 * 1024
)
# Deepest nesting of arrays and objects in a request body, a definition, a run's input and a
# task's output. Python's recursion limit (1000) sits far above the hard maximum.
JUNCTION_MAX_JSON_DEPTH = env_int("JUNCTION_MAX_JSON_DEPTH", 64, minimum=8, maximum=256)
# Longest JMESPath expression (a `transform`/`condition` expression or a `$ref` path), in
# characters, and the most evaluation steps (nodes visited, items flattened, joined, compared)
# one evaluation may take.
JUNCTION_MAX_EXPRESSION_LENGTH = env_int("JUNCTION_MAX_EXPRESSION_LENGTH", 1024, minimum=16, maximum=16384)
JUNCTION_MAX_EXPRESSION_STEPS = env_int(
    "JUNCTION_MAX_EXPRESSION_STEPS", 1_000_000, minimum=1000, maximum=50_000_000
)
# Longest `$template` text (characters) and most `{{ }}` placeholders in one template; the
# rendered text is at most JUNCTION_MAX_OUTPUT_BYTES.
JUNCTION_MAX_TEMPLATE_LENGTH = env_int("JUNCTION_MAX_TEMPLATE_LENGTH", 16384, minimum=64, maximum=1024 * 1024)
JUNCTION_MAX_TEMPLATE_PLACEHOLDERS = env_int("JUNCTION_MAX_TEMPLATE_PLACEHOLDERS", 64, minimum=1, maximum=1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = JUNCTION_MAX_REQUEST_BYTES
# The largest response body (after decompression) an `http_request` task reads.
JUNCTION_HTTP_MAX_RESPONSE_BYTES = env_int("JUNCTION_HTTP_MAX_RESPONSE_BYTES", 1024 * 1024)

# --- Code sandbox (tasks_catalog/sandbox.py, docs/sandbox.md) -----------------------------------
# Path or name (looked up on PATH) of bubblewrap; missing means code tasks are refused.
JUNCTION_CODE_SANDBOX_BWRAP = env_str("JUNCTION_CODE_SANDBOX_BWRAP", "bwrap")
# Limits of one code task. The wall-clock limit is also capped by the task's own `timeout`.
JUNCTION_CODE_CPU_SECONDS = env_int("JUNCTION_CODE_CPU_SECONDS", 10)
JUNCTION_CODE_MEMORY_MIB = env_int("JUNCTION_CODE_MEMORY_MIB", 256)
JUNCTION_CODE_WALL_SECONDS = env_float("JUNCTION_CODE_WALL_SECONDS", 30)
JUNCTION_CODE_MAX_OUTPUT_BYTES = env_int("JUNCTION_CODE_MAX_OUTPUT_BYTES", 1024 * 1024)
JUNCTION_CODE_MAX_PROCESSES = env_int("JUNCTION_CODE_MAX_PROCESSES", 16)
JUNCTION_CODE_MAX_OPEN_FILES = env_int("JUNCTION_CODE_MAX_OPEN_FILES", 64)
# Largest file the code may write, and the size of its private /tmp.
JUNCTION_CODE_MAX_FILE_MIB = env_int("JUNCTION_CODE_MAX_FILE_MIB", 16)
# Unprivileged uids the sandboxes run as, one per running sandbox on a machine (RLIMIT_NPROC is
# counted per uid machine-wide). Use uids no real user or other service has; give workers that
# share a kernel (containers without user namespaces) disjoint ranges or the same lock directory.
JUNCTION_CODE_SANDBOX_UID = env_int("JUNCTION_CODE_SANDBOX_UID", 61000)
JUNCTION_CODE_SANDBOX_UID_COUNT = env_int("JUNCTION_CODE_SANDBOX_UID_COUNT", 64)
JUNCTION_CODE_SANDBOX_LOCK_DIR = env_str("JUNCTION_CODE_SANDBOX_LOCK_DIR", "/tmp/junction-sandbox")
# Where each code task gets a cgroup v2 of its own (memory, processes and CPU for all its
# processes together); empty, or a machine without cgroup v2, keeps the per-process rlimits only.
JUNCTION_CODE_CGROUP_PARENT = env_str("JUNCTION_CODE_CGROUP_PARENT", "/sys/fs/cgroup/junction-sandbox")
# CPUs one code task may use at once (cgroup cpu.max).
JUNCTION_CODE_CPUS = env_float("JUNCTION_CODE_CPUS", 1, minimum=0.01, maximum=64)
# What print() wrote that the task-type test endpoint shows as `logs` (the last bytes are kept).
JUNCTION_CODE_MAX_LOG_BYTES = env_int("JUNCTION_CODE_MAX_LOG_BYTES", 64 * 1024, minimum=0, maximum=1024 * 1024)

# --- Operations (docs/operations.md) --------------------------------------------------------
# /metrics: a bearer token; unset, only loopback clients that came through no proxy may read it.
JUNCTION_METRICS_TOKEN = env_str("JUNCTION_METRICS_TOKEN", "")
# Label session durations by interaction id (one histogram per interaction; off: one in all).
JUNCTION_METRICS_PER_INTERACTION = env_bool("JUNCTION_METRICS_PER_INTERACTION", True)
# How long a scrape waits for workers to answer the liveness ping, in seconds.
JUNCTION_METRICS_PING_SECONDS = env_float("JUNCTION_METRICS_PING_SECONDS", 0.5, minimum=0.05, maximum=10)
# A worker host serves its processes' metrics on this port (0: off); needs PROMETHEUS_MULTIPROC_DIR.
JUNCTION_WORKER_METRICS_PORT = env_int("JUNCTION_WORKER_METRICS_PORT", 0, minimum=0, maximum=65535)
JUNCTION_WORKER_METRICS_ADDR = env_str("JUNCTION_WORKER_METRICS_ADDR", "0.0.0.0")
if JUNCTION_WORKER_METRICS_PORT and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    raise ImproperlyConfigured(
        "JUNCTION_WORKER_METRICS_PORT needs PROMETHEUS_MULTIPROC_DIR: the pool processes count into it")
# Finished sessions (and their task records) older than this many days are deleted by the
# hourly `junction.purge_sessions` job and `manage.py purge_sessions`; 0 keeps them forever.
# At least 1: a repeated Idempotency-Key finds its session for 24 hours.
JUNCTION_SESSION_RETENTION_DAYS = env_int("JUNCTION_SESSION_RETENTION_DAYS", 30, minimum=0, maximum=3650)
# Sessions deleted per transaction (each batch is short, so locks are held briefly).
JUNCTION_PURGE_BATCH = env_int("JUNCTION_PURGE_BATCH", 1000, minimum=10, maximum=100_000)
CELERY_BEAT_SCHEDULE["purge-sessions"] = {
    "task": "junction.purge_sessions",
    "schedule": env_float("JUNCTION_PURGE_INTERVAL", 3600, minimum=60, maximum=86400),
}
# Beat touches this file on every tick (config/beat.py): its healthcheck reads the file's age.
CELERY_BEAT_SCHEDULER = "config.beat.HeartbeatScheduler"
CELERY_BEAT_MAX_LOOP_INTERVAL = 30
JUNCTION_BEAT_HEARTBEAT_FILE = env_str("JUNCTION_BEAT_HEARTBEAT_FILE", "/tmp/junction-beat-heartbeat")
# Behind a TLS-terminating proxy: trust its X-Forwarded-Proto (set SECURE_PROXY_SSL_HEADER to
# the header's name, e.g. X-Forwarded-Proto) and X-Forwarded-Host / -Port, so that
# request.build_absolute_uri (endpoint URLs, pagination links) says https:// and the public
# host. Off by default: a client could otherwise forge them.
_PROXY_SSL_HEADER = env_str("SECURE_PROXY_SSL_HEADER", "")
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_" + _PROXY_SSL_HEADER.upper().replace("-", "_"), "https") if _PROXY_SSL_HEADER else None
)
USE_X_FORWARDED_HOST = env_bool("USE_X_FORWARDED_HOST", False)
USE_X_FORWARDED_PORT = env_bool("USE_X_FORWARDED_PORT", False)
# HTTPS hardening (`manage.py check --deploy` is clean with the production values in
# docs/operations.md). Probes and scrapes over plain HTTP inside the network are not redirected.
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0, minimum=0, maximum=2 * 365 * 86400)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", False)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", False)
