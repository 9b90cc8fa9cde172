"""`manage.py rotate_encryption_keys`: re-encrypt every stored secret with the first key.

Rotation: put a new key first in JUNCTION_ENCRYPTION_KEYS, keep the old ones after it, run
this command, then remove the old keys.
"""
from django.core.management.base import BaseCommand, CommandError

from integrations.encryption import DecryptionError
from integrations.services import secrets_rotate_keys


class Command(BaseCommand):
    help = "Re-encrypt every stored secret (integrations, provider apps, OAuth states) with the first key of JUNCTION_ENCRYPTION_KEYS."

    def handle(self, *args, **options):
        try:
            rotated = secrets_rotate_keys()
        except DecryptionError as exc:
            raise CommandError(f"{exc}: keep every old key in JUNCTION_ENCRYPTION_KEYS until rotation is done.") from None
        self.stdout.write(self.style.SUCCESS(
            f"Re-encrypted the secrets of {rotated.integrations} integration(s), {rotated.provider_apps} provider "
            f"app(s) and {rotated.oauth_states} OAuth dance(s) in progress with the first key."
        ))
