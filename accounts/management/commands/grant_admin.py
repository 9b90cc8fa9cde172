"""`manage.py grant_admin <username>`: let a builder into the admin, scoped to their own objects."""
from django.core.management.base import BaseCommand, CommandError

from accounts.admin_scoping import BUILDER_GROUP, builder_admin_grant
from accounts.models import User


class Command(BaseCommand):
    help = (f"Make a user staff in the '{BUILDER_GROUP}' group: in the admin they manage their own "
            "interactions, sessions, integrations and API keys (docs/admin.md).")

    def add_arguments(self, parser):
        parser.add_argument("username")

    def handle(self, *args, username: str, **options):
        user = User.objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user named {username!r}.")
        builder_admin_grant(user=user)
        self.stdout.write(self.style.SUCCESS(f"{username} can now log in to the admin as a builder."))
