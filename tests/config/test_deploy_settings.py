"""Production settings: behind a TLS proxy, and `manage.py check --deploy`."""
from __future__ import annotations

import os
import subprocess
import sys

from django.conf import settings as django_settings

from tests.conftest import make_interaction

# The documented production values (docs/operations.md, "Production settings").
PRODUCTION = {
    "DJANGO_SETTINGS_MODULE": "config.settings",
    "DEBUG": "false",
    "SECRET_KEY": "k3X9v!q2ZrL7w@pN4tY8mB1cH6sJ0dF5gA-operations-check-deploy-secret",
    "JUNCTION_ENCRYPTION_KEYS": "0P4nyNaqEcm4t1pfhUKMy5RGbE1PrKvkR3T2hE8Op8I=",
    "ALLOWED_HOSTS": "junction.example.com",
    "CSRF_TRUSTED_ORIGINS": "https://junction.example.com",
    "SECURE_PROXY_SSL_HEADER": "X-Forwarded-Proto",
    "USE_X_FORWARDED_HOST": "true",
    "SECURE_SSL_REDIRECT": "true",
    "SECURE_HSTS_SECONDS": "31536000",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS": "true",
    "SECURE_HSTS_PRELOAD": "true",
    "SESSION_COOKIE_SECURE": "true",
    "CSRF_COOKIE_SECURE": "true",
    "JUNCTION_METRICS_TOKEN": "a-long-random-metrics-token",
    "LOG_FORMAT": "json",
}


def test_endpoint_urls_say_https_behind_a_tls_proxy(api, user, settings):
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.USE_X_FORWARDED_HOST = True
    settings.ALLOWED_HOSTS = ["junction.example.com", "testserver"]
    interaction = make_interaction(user, active=True)
    proxied = {"HTTP_X_FORWARDED_PROTO": "https", "HTTP_X_FORWARDED_HOST": "junction.example.com"}
    endpoint = api.get(f"/api/interactions/{interaction.id}/endpoint/", **proxied).json()
    assert endpoint["url"] == f"https://junction.example.com/api/interactions/{interaction.id}/run/"
    assert "https://junction.example.com/" in endpoint["curl"]
    detail = api.get(f"/api/interactions/{interaction.id}/", **proxied).json()
    assert detail["endpoint_url"].startswith("https://junction.example.com/")


def test_forwarded_headers_are_ignored_by_default(api, user):
    assert django_settings.SECURE_PROXY_SSL_HEADER is None and not django_settings.USE_X_FORWARDED_HOST
    interaction = make_interaction(user, active=True)
    endpoint = api.get(f"/api/interactions/{interaction.id}/endpoint/", HTTP_X_FORWARDED_PROTO="https",
                       HTTP_X_FORWARDED_HOST="evil.example.com").json()
    assert endpoint["url"].startswith("http://testserver/")


def test_check_deploy_is_clean_with_the_production_settings():
    env = {k: v for k, v in os.environ.items() if k not in PRODUCTION}
    env.update(PRODUCTION)
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=django_settings.BASE_DIR, env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_the_proxy_header_setting_names_a_header():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.test_settings", "SECURE_PROXY_SSL_HEADER": "X-Forwarded-Proto"}
    code = "import django; django.setup(); from django.conf import settings; print(settings.SECURE_PROXY_SSL_HEADER)"
    result = subprocess.run([sys.executable, "-c", code], cwd=django_settings.BASE_DIR, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "('HTTP_X_FORWARDED_PROTO', 'https')", result.stderr
