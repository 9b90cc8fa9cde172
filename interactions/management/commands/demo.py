"""`manage.py demo`: create (idempotently) the demo user, its API key and the demo interaction."""
from django.core.management.base import BaseCommand

from interactions.demo import demo_ensure, demo_instructions


class Command(BaseCommand):
    help = "Create the demo superuser, an API key and the active 'demo-order-summary' interaction."

    def add_arguments(self, parser):
        parser.add_argument(
            "--base-url", default="http://127.0.0.1:8000", help="Where the API is served, for the printed curl lines."
        )

    def handle(self, *args, base_url: str, **options):
        setup = demo_ensure()
        self.stdout.write(self.style.SUCCESS(f"Demo ready: interaction {setup.interaction.id}"))
        self.stdout.write(demo_instructions(setup=setup, base_url=base_url))
