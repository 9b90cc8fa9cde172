"""`manage.py rotate_encryption_keys`: re-encrypt every stored secret with the first key.

Rotation: put a new key first in JUNCTION_ENCRYPTION_KEYS, keep the old ones after it, run
this command, then remove the old keys.
"""
from django.core.management.base import BaseCommand, CommandError

from integrations.encryption import DecryptionError
from integrations.services import integration_rotate_keys


class Command(BaseCommand):
    help = "Re-encrypt every integration's secrets with the first key of JUNCTION_ENCRYPTION_KEYS."

    def handle(self, *args, **options):
        try:
            count = integration_rotate_keys()
        except DecryptionError as exc:
            raise CommandError(f"{exc}: keep every old key in JUNCTION_ENCRYPTION_KEYS until rotation is done.") from None
        self.stdout.write(self.style.SUCCESS(f"Re-encrypted the secrets of {count} integration(s) with the first key."))
