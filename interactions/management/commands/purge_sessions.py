"""`manage.py purge_sessions`: delete finished sessions past the retention period now."""
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from interactions.retention import retention_cutoff, sessions_purge


class Command(BaseCommand):
    help = ("Delete finished sessions (and their task records) that ended more than "
            "JUNCTION_SESSION_RETENTION_DAYS days ago, in batches. Queued and running sessions are never touched.")

    def add_arguments(self, parser):
        parser.add_argument("--days", type=int, default=None,
                            help="Retention in days instead of JUNCTION_SESSION_RETENTION_DAYS (at least 1).")
        parser.add_argument("--batch", type=int, default=None,
                            help="Sessions per transaction (default JUNCTION_PURGE_BATCH).")

    def handle(self, *args, days: int | None, batch: int | None, **options):
        if days is not None and days < 1:
            raise CommandError("--days must be at least 1")
        if batch is not None and batch < 1:
            raise CommandError("--batch must be at least 1")
        before = retention_cutoff(days=days)
        if before is None:
            self.stdout.write(f"Retention is off (JUNCTION_SESSION_RETENTION_DAYS="
                              f"{settings.JUNCTION_SESSION_RETENTION_DAYS}): nothing deleted.")
            return
        deleted = sessions_purge(before=before, batch=batch)
        self.stdout.write(self.style.SUCCESS(f"Deleted {deleted} sessions that ended before {before.isoformat()}."))
