"""Settings for the test suite: the distributed stack (PostgreSQL + Redis) with fixed test keys.

Each variable can still be overridden from the environment (e.g. another DATABASE_URL).
"""
import os

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/junction")
os.environ.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/14")
os.environ.setdefault("CELERY_RESULT_BACKEND", "redis://127.0.0.1:6379/15")
os.environ.setdefault("SECRET_KEY", "test-secret-key-not-for-production-0123456789abcdef")
# Two keys: the first encrypts, both decrypt (tests rotate between them).
os.environ.setdefault(
    "JUNCTION_ENCRYPTION_KEYS",
    "0P4nyNaqEcm4t1pfhUKMy5RGbE1PrKvkR3T2hE8Op8I=,yJ7kzZz5mw2H1oi5vN3E3gHOeZ2yZqGQ1xGvSm8m0l4=",
)
os.environ.setdefault("JUNCTION_SSRF_ALLOWED_NETWORKS", "127.0.0.0/8")

from config.settings import *  # noqa: E402,F401,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast logins in tests
WHITENOISE_USE_FINDERS = True
