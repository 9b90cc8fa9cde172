"""`manage.py serve`: migrate, set up the demo, start the embedded worker and serve the API.

This is the embedded mode's one command (the README's first command ends in it): uvicorn
serving `config.asgi` (the API and the admin, static files through WhiteNoise; a caller that
waits holds no thread, as in production) and an in-process Celery worker. In the distributed
mode it still serves, but workers run separately.
"""
from __future__ import annotations

import errno
import socket
import warnings

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

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

        listener = None
        try:
            listener = _listen(host, port)
            import uvicorn

            from config.asgi import application

            on_bind(listener.getsockname()[1])
            # uvicorn handles SIGINT/SIGTERM itself: run() returns once it has shut down.
            server = uvicorn.Server(uvicorn.Config(
                application, lifespan="on", access_log=verbosity > 1,
                log_level="info" if verbosity > 1 else "warning",
            ))
            server.run(sockets=[listener])
            self.stdout.write("\nStopping…")
        except OSError as exc:
            if listener is not None:
                raise
            reason = "the port is already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
            raise CommandError(f"Cannot listen on {host}:{port}: {reason}.") from None
        except KeyboardInterrupt:
            self.stdout.write("\nStopping…")
        finally:
            if listener is not None:
                listener.close()
            stop_embedded_worker(timeout=5)


def _listen(host: str, port: int) -> socket.socket:
    """Bind the listening socket here, so the banner can show the port the system picked."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
        listener.listen(2048)
    except OSError:
        listener.close()
        raise
    listener.set_inheritable(True)
    return listener
