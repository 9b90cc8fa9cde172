"""Liveness and readiness probes: `/healthz` (the process answers) and `/readyz`."""
from __future__ import annotations

from django.conf import settings
from django.db import connection
from django.http import JsonResponse

from config.celery import app


def healthz(request):
    return JsonResponse({"status": "ok"})


def _database_ok() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return True
    except Exception:  # any driver error means "not reachable"
        return False


def _broker_ok() -> bool:
    try:
        # The URL is read at call time, not frozen into the app at start-up, so the probe
        # checks what the settings say now (tests point it at a closed port).
        with app.connection_for_write(settings.CELERY_BROKER_URL) as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
        return True
    except Exception:  # any transport error means "not reachable"
        return False


def readyz(request):
    checks = {"database": _database_ok(), "broker": _broker_ok()}
    down = [name for name, ok in checks.items() if not ok]
    if down:
        return JsonResponse(
            {"code": "service_unavailable", "message": f"Not ready: {', '.join(down)} unreachable.",
             "details": {name: ["unreachable"] for name in down}},
            status=503,
        )
    return JsonResponse({"status": "ok", "checks": {name: "ok" for name in checks}})
