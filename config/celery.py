"""The Celery application: configured from Django settings (`CELERY_*`), tasks autodiscovered."""
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, NamedTuple

from celery import Celery
from celery.app.amqp import AMQP
from kombu.utils.objects import cached_property
from celery.signals import (
    setup_logging, task_postrun, task_prerun, worker_init, worker_process_init, worker_process_shutdown,
    worker_shutdown,
)

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

logger = logging.getLogger(__name__)


class RecordedMessage(NamedTuple):
    """A task message as Celery hands it to its sender: the task's name, the message (headers,
    properties, body, sent event) and the routing options."""

    name: str
    message: Any
    options: dict[str, Any]


_recording: ContextVar[list[RecordedMessage] | None] = ContextVar("junction_recording", default=None)


class RecordingAMQP(AMQP):
    """Celery's AMQP, whose task sender records instead of publishing within `recorded_messages()`."""

    @cached_property
    def send_task_message(self):
        send = self._create_task_sender()

        def send_task_message(producer, name, message, **options):
            recorded = _recording.get()
            if recorded is None:
                return send(producer, name, message, **options)
            recorded.append(RecordedMessage(name, message, options))
            return None

        return send_task_message


@contextmanager
def recorded_messages() -> Iterator[list[RecordedMessage]]:
    """Record, instead of publishing, the task messages this context sends (in order).

    Everything else `apply_async` does still happens (ids, results, routing): what is recorded
    is exactly what Celery would publish. Used to prepare a plan's messages once
    (interactions/dispatch.py).
    """
    recorded: list[RecordedMessage] = []
    token = _recording.set(recorded)
    try:
        yield recorded
    finally:
        _recording.reset(token)


app = Celery("junction", amqp=RecordingAMQP)
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


def _survive_restore_on_a_lost_connection() -> None:
    """Keep a worker alive when its Redis connection drops while it holds messages.

    kombu 5.7's Redis channel, when closed after the broker went away, restores the messages
    it holds (`QoS.restore_unacked`) through a connection that has already been released
    (`self.connection.client` is None) and raises AttributeError; Celery's consumer treats that
    as unrecoverable and the worker exits. Such a restore cannot reach the broker anyway: the
    held messages stay in Redis's unacked set and come back after the visibility timeout (or,
    with a broker restarted without persistence, are gone and the sweeper resumes their
    sessions). So the failed restore is logged and the consumer reconnects.
    """
    from kombu.transport import redis as kombu_redis
    from kombu.transport import virtual as kombu_virtual

    original = kombu_redis.QoS.restore_unacked
    if getattr(original, "junction_patched", False):
        return

    def restore_unacked(self, client=None):
        try:
            return original(self, client)
        except AttributeError:
            logger.warning("broker connection lost while holding %d messages: they come back after "
                           "the visibility timeout", len(self._delivered))
            self._delivered.clear()
            return None

    restore_unacked.junction_patched = True  # type: ignore[attr-defined]  # a marker on the function
    kombu_redis.QoS.restore_unacked = restore_unacked  # type: ignore[method-assign]  # the patch itself

    # The same released connection fails the ack (or reject) of a task that was running when
    # the broker went away and ends after it: found by the soak (bench/chaos.py) once its
    # sessions held pool processes across Redis restarts. The message stays in the unacked set
    # and comes back after the visibility timeout, where its delivery is a duplicate (or it
    # went with a broker restarted without persistence); this process forgets it.
    for name in ("ack", "reject"):
        _forget_on_a_lost_connection(kombu_redis.QoS, name, kombu_virtual)


def _forget_on_a_lost_connection(qos_class, name: str, virtual) -> None:
    original = getattr(qos_class, name)

    def settle(self, delivery_tag, *args, **kwargs):
        try:
            return original(self, delivery_tag, *args, **kwargs)
        except AttributeError:
            logger.warning("broker connection lost before the %s of a message: it comes back after the "
                           "visibility timeout", name)
            virtual.QoS.ack(self, delivery_tag)  # forgotten here, as an ack would
            return None

    setattr(qos_class, name, settle)


_survive_restore_on_a_lost_connection()


@task_prerun.connect
@task_postrun.connect
def _drop_unusable_connections(**kwargs) -> None:
    """Close a database connection that is broken or older than CONN_MAX_AGE.

    Workers keep their connection across tasks (CELERY_DB_REUSE_MAX); this is what Django does
    around each request, done around each task, so a PostgreSQL restart costs one error, not
    every task after it.
    """
    from django.db import close_old_connections

    close_old_connections()


@setup_logging.connect
def _django_logging(**kwargs) -> None:
    """Keep Django's LOGGING (JSON or text, with the log context) in workers and beat.

    A receiver of this signal stops Celery from replacing the root logger's handlers with its
    own plain format. LOG_LEVEL, not `--loglevel`, sets the level.
    """
    import logging.config

    from django.conf import settings

    logging.config.dictConfig(settings.LOGGING)


@task_prerun.connect
def _log_context_in(task_id=None, task=None, args=None, kwargs=None, **_) -> None:
    from config import logcontext

    logcontext.task_started(task_name=getattr(task, "name", ""), task_id=task_id, args=args, kwargs=kwargs)


@task_postrun.connect
def _log_context_out(**_) -> None:
    from config import logcontext

    logcontext.task_ended()


@worker_process_init.connect
def _count_pool_process(**_) -> None:
    from config import metrics

    metrics.process_started("worker")


@worker_process_shutdown.connect
def _send_what_is_queued(**_) -> None:
    """Send the task events and slot releases this pool process queued (interactions/redis_sender.py).

    A pool process leaves through `os._exit`, which skips the sender's `atexit` flush.
    """
    from interactions import redis_sender

    redis_sender.flush()


@worker_process_shutdown.connect
@worker_shutdown.connect
def _uncount_process(**_) -> None:
    from config import metrics

    metrics.process_exited()


@worker_init.connect
def _serve_worker_metrics(**_) -> None:
    """Serve this host's metrics on JUNCTION_WORKER_METRICS_PORT from the worker's main process."""
    from django.conf import settings

    if settings.JUNCTION_WORKER_METRICS_PORT:
        from config import metrics_listener

        metrics_listener.start(settings.JUNCTION_WORKER_METRICS_ADDR, settings.JUNCTION_WORKER_METRICS_PORT)


@worker_init.connect
def _hard_limits_without_prefork(sender=None, **_) -> None:
    """A pool that cannot kill a task (threads) gets the watchdog that restarts the worker past a
    task's hard time limit (config/hardlimits.py), and counts as one live worker process.

    Not the embedded mode's in-process worker: restarting would restart the whole server (its
    tasks run to their end there, as documented in docs/execution.md).
    """
    from django.conf import settings

    from config import hardlimits

    if sender is None or settings.EMBEDDED or hardlimits.enforces_limits(sender.pool_cls):
        return
    hardlimits.install(sender.pool_cls)
    from config import metrics

    metrics.process_started("worker")


@worker_init.connect
def _no_health_check_per_task(**kwargs) -> None:
    """Spare every task the `SELECT 1` that CONN_HEALTH_CHECKS sends before its first query.

    A worker needs no such check: a task that meets a dead connection gets a database error,
    which the Celery task retries as an outage after dropping the connection
    (`interactions/tasks.py`). The API keeps the check (a stale connection must not cost a
    caller a 503 after a database restart).
    """
    from django.db import connections

    for alias in connections:  # every pool (processes, threads) shares these settings
        connections[alias].settings_dict["CONN_HEALTH_CHECKS"] = False
        connections[alias].health_check_enabled = False  # type: ignore[attr-defined]  # Django's, not in the stubs


def queue_depths() -> dict[str, int] | None:
    """Return the number of messages waiting in each Junction queue, or None if the broker
    cannot be reached."""
    depths: dict[str, int] = {}
    try:
        with app.connection_for_read() as conn:
            channel = conn.default_channel
            for queue in app.conf.task_queues or ():
                # Declaring is idempotent and, unlike a passive declare, answers for a queue
                # that no one has published to yet.
                depths[queue.name] = channel.queue_declare(queue=queue.name).message_count
    except Exception:  # any transport error: the broker is unreachable
        logger.debug("no queue depth", exc_info=True)
        return None
    return depths
