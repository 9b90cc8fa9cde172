"""Celery beat's scheduler, with a heartbeat file for the beat container's healthcheck."""
from __future__ import annotations

import logging
from pathlib import Path

from celery.beat import PersistentScheduler
from django.conf import settings

logger = logging.getLogger(__name__)


class HeartbeatScheduler(PersistentScheduler):
    """The default scheduler; each tick also touches JUNCTION_BEAT_HEARTBEAT_FILE.

    Beat ticks at least every CELERY_BEAT_MAX_LOOP_INTERVAL seconds, so a file older than a
    few of those means beat is stuck or gone (docker-compose.yml's healthcheck).
    """

    def tick(self, *args, **kwargs):
        try:
            Path(settings.JUNCTION_BEAT_HEARTBEAT_FILE).touch()
        except OSError:
            logger.warning("could not touch %s", settings.JUNCTION_BEAT_HEARTBEAT_FILE, exc_info=True)
        return super().tick(*args, **kwargs)
