"""`manage.py serve`: migrate, set up the demo, start the embedded worker and serve the API.

This is the embedded mode's one command (the README's first command ends in it): a threaded
WSGI server for the API and the admin, static files through WhiteNoise, and an in-process
Celery worker. In the distributed mode it still serves, but workers run separately.
"""
from __future__ import annotations

import errno
import warnings

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.core.servers.basehttp import run
from django.core.wsgi import get_wsgi_application

from config.embedded import EmbeddedWorkerError, start_embedded_worker, stop_embedded_worker


class Command(BaseCommand):
    help = "Run Junction: migrate, create the demo, start the embedded worker and serve the API and admin."
    requires_system_checks = []  # checked once below, after migrating

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1", help="Address to listen on (default 127.0.0.1).")
        parser.add_argument("--port", type=int, default=8000, help="Port to listen on (default 8000; 0 picks one).")
        parser.add_argument("--no-demo", action="store_true", help="Do not create the demo user and interaction.")

    def handle(self, *args, host: str, port: int, no_demo: bool, verbosity: int, **options):
        self.check(display_num_errors=False)
        self.stdout.write("Applying migrations…")
        call_command("migrate", interactive=False, verbosity=max(verbosity - 1, 0))
        setup = None
        if not no_demo:
            from interactions.demo import demo_ensure

            setup = demo_ensure()

        if settings.EMBEDDED:
            # Static files come from the apps (WHITENOISE_USE_FINDERS): no collectstatic dir needed.
            warnings.filterwarnings("ignore", message="No directory at")
            try:
                start_embedded_worker(loglevel="INFO" if verbosity > 1 else "WARNING")
            except EmbeddedWorkerError as exc:
                raise CommandError(str(exc)) from None
            worker_note = "Embedded mode: SQLite and an in-process Celery worker (queues default, code)."
        else:
            worker_note = (
                "Distributed mode: tasks go to the broker; run workers separately "
                "(`celery -A config worker`, and `celery -A config beat` for periodic jobs)."
            )

        def on_bind(bound_port: int) -> None:
            shown_host = "127.0.0.1" if host in {"0.0.0.0", "::", ""} else host
            base_url = f"http://{shown_host}:{bound_port}"
            self.stdout.write(self.style.SUCCESS(f"\nJunction is running at {base_url}/"))
            self.stdout.write(worker_note)
            if setup is not None:
                from interactions.demo import demo_instructions

                self.stdout.write(demo_instructions(setup=setup, base_url=base_url))
            if host not in {"127.0.0.1", "localhost"}:
                self.stdout.write(
                    f"Listening on {host}: add the names clients use to ALLOWED_HOSTS "
                    f"(now {','.join(settings.ALLOWED_HOSTS)})."
                )
            self.stdout.write("\nQuit with CONTROL-C.", ending="\n")
            self.stdout.flush()

        try:
            run(host, port, get_wsgi_application(), ipv6=":" in host, threading=True, on_bind=on_bind)
        except OSError as exc:
            reason = "the port is already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
            raise CommandError(f"Cannot listen on {host}:{port}: {reason}.") from None
        except KeyboardInterrupt:
            self.stdout.write("\nStopping…")
        finally:
            stop_embedded_worker(timeout=5)
