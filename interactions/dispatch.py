"""Everything that talks to Celery: send a session's steps, revoke running ones.

Only tasks that need a worker are sent (`CompiledVersion.worker_plan`): fused tasks run inside
the steps that make them ready (`interactions/executor.py`).

Sending a canvas through Celery (`apply_async`) builds and freezes every signature, makes an
`AsyncResult` per task (a group's results subscribe to the result backend) and formats each
message, on every call. A plan of the same version sends the same messages each time but for
the session id and the ids Celery makes up (group ids), so the usual plans are prepared once per
process (`Prepared`): Celery sends the canvas into a recorder, and each call then sends the
recorded messages with its own ids, through Celery's own task sender (docs/execution.md, "What a
call costs").
"""
from __future__ import annotations

import json
import logging
import os
import re
import time
from dataclasses import dataclass
from typing import Any

from celery.app.amqp import task_message
from celery.canvas import Signature
from celery.utils import uuid
from django.conf import settings
from kombu.exceptions import BatchPublishError

from config.queues import Queue

from interactions.compiled import CompiledVersion
from interactions.engine.canvas import Plan, chord_headers, compile_plan, restrict, to_canvas
from tasks_catalog.registry import task_types

logger = logging.getLogger(__name__)


def task_message_id(session_id: str, name: str) -> str:
    """The Celery task id of a session's task: stable, so it can be revoked by name."""
    return f"{session_id}.{name}"


def _signature_for(session_id: str, compiled: CompiledVersion, version_id: str,
                   timers: dict[str, tuple[float, str | None]], user_id: str | None, headers: frozenset[str]):
    from interactions.tasks import run_task

    def make(name: str):
        spec = compiled.definition.tasks[name]
        timeout = spec.timeout or settings.JUNCTION_DEFAULT_TASK_TIMEOUT
        if name in compiled.follows:  # its step may run the next links too (compiled.chain_links)
            timeout = max(timeout, min(settings.JUNCTION_CHAIN_STEP_SECONDS, settings.JUNCTION_MAX_TASK_TIMEOUT))
        timer = timers.get(name)
        extra = {"due": timer[0], "timer_error": timer[1]} if timer else {}
        signature = run_task.si(session_id, name, version_id, user_id=user_id, **extra).set(
            task_id=task_message_id(session_id, name),
            queue=str(task_types.get(spec.type).queue),
            # Prefork workers enforce these; task types also honour the timeout themselves.
            soft_time_limit=timeout,
            time_limit=timeout + settings.JUNCTION_HARD_TIMEOUT_GRACE,
            # Junction reads every outcome from PostgreSQL: Celery stores a step's result only
            # for a chord that waits on it (engine/canvas.py `chord_headers`).
            ignore_result=name not in headers,
        )
        if timer:  # a timer claimed by the call: delivered once, when due
            signature = signature.set(countdown=max(0.0, timer[0] - time.time()))
        return signature

    return make


def worker_plan(*, compiled: CompiledVersion, unfinished: set[str]) -> Plan | None:
    """The plan of the `unfinished` tasks that need a worker (None if none does).

    Tasks that already ended must not be sent again: their delivery would be ignored as a
    duplicate and the successors chained after it would never fire.
    """
    if unfinished == set(compiled.definition.tasks) - compiled.at_call:
        return compiled.worker_plan  # the usual start: compiled once per version
    predecessors = {
        name: {pred for pred in compiled.definition.tasks[name].execute_after if pred in unfinished}
        for name in unfinished
    }
    if not predecessors:
        return None
    return restrict(compile_plan(predecessors), unfinished - compiled.fused)


def dispatch_plan(
    *, session_id: str, version_id: str, compiled: CompiledVersion, plan: Plan | None,
    timers: dict[str, tuple[float, str | None]] | None = None, user_id: str | None = None,
) -> None:
    """Send a plan's canvas to the broker; with no plan, the task that finishes the session.

    `timers` are the timers the caller already claimed: {task: (due, epoch seconds; the error it
    ends with or None)}; each message waits until due (a countdown) and carries both, so that its
    delivery only records the timer (executor `_timer_due`).
    `user_id` (the session's owner) travels with each message, for the slow-task slots.

    If the broker is unreachable the session stays in PostgreSQL and the sweeper sends it once
    the broker is back: the caller's request still succeeds.
    """
    try:
        # The usual call: the plan's messages as prepared once (`Prepared`).
        prepared = None if plan is None or timers else prepared_plan(
            compiled=compiled, version_id=version_id, plan=plan, user_id=user_id)
        if prepared is not None:
            prepared.send(session_id)
        else:
            plan_canvas(session_id=session_id, version_id=version_id, compiled=compiled, plan=plan,
                        timers=timers, user_id=user_id).apply_async()
    except Exception:  # the broker is down: kombu raises its own and redis' errors
        logger.exception("could not enqueue session %s; the sweeper will resume it", session_id)


def plan_canvas(
    *, session_id: str, version_id: str, compiled: CompiledVersion, plan: Plan | None,
    timers: dict[str, tuple[float, str | None]] | None = None, user_id: str | None = None,
) -> Signature:
    """The Celery canvas `dispatch_plan` sends for a session (arguments as there)."""
    from interactions.tasks import finish_session

    if plan is None:
        return finish_session.si(session_id).set(queue=str(Queue.DEFAULT))
    return to_canvas(plan, _signature_for(session_id, compiled, version_id, timers or {}, user_id, chord_headers(plan)))


def revoke_running(*, session_id, names: list[str], compiled: CompiledVersion | None = None) -> None:
    """Ask the workers to stop these tasks of a session (prefork workers terminate them).

    A task may be running in the step of a link before it in its chain (`compiled.follows`):
    that step's message is revoked too.
    """
    if not names:
        return
    from config.celery import app

    steps = sorted(set(names).union(*(compiled.hosts(name) for name in names)) if compiled else names)
    try:
        app.control.revoke([task_message_id(str(session_id), name) for name in steps], terminate=True)
    except Exception:  # best effort: the tasks' results are discarded anyway
        logger.warning("could not broadcast the revoke of %s", names, exc_info=True)


# Stands for the session id while a plan is prepared: not a UUID, so never one of Celery's ids.
SESSION_SLOT = "junction-session-slot"
_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
# Prepared plans kept per process (a version's plan is prepared once; sweeper resumes of partly
# run sessions add others). Past this many, the cache starts again.
PREPARED_LIMIT = 512
_SESSION, _REPLY_TO = -1, -2


@dataclass(frozen=True)
class Prepared:
    """The task messages Celery sends for one plan, with the per-call parts left as slots.

    `text` is the JSON of the recorded messages (name, headers, properties, body, sent event)
    cut at each slot: the session id, the sending thread's reply-to address (Celery's
    `thread_oid`) or one of the ids Celery made up (a slot per distinct id, made anew on every
    call as Celery would). `options` are each message's routing options, as recorded.
    """

    text: tuple[str, ...]
    slots: tuple[int, ...]
    ids: int
    options: tuple[dict[str, Any], ...]

    def messages(self, session_id: str, reply_to: str, fresh: list[str]) -> list[tuple[str, Any, dict[str, Any]]]:
        """The messages of one session: (task name, Celery's task message, routing options).
        `fresh` are the ids standing for Celery's (as many as `ids`)."""
        session_id = json.dumps(session_id)[1:-1]  # a UUID: nothing to escape, but never broken JSON
        pieces = [self.text[0]]
        for slot, text in zip(self.slots, self.text[1:]):
            pieces.append(session_id if slot == _SESSION else reply_to if slot == _REPLY_TO else fresh[slot])
            pieces.append(text)
        return [
            (name, task_message(headers, properties, (tuple(body[0]), *body[1:]), sent_event), options)
            for (name, headers, properties, body, sent_event), options in zip(json.loads("".join(pieces)),
                                                                              self.options)
        ]

    def send(self, session_id: str) -> None:
        """Publish one session's messages with Celery's task sender, several in one Redis
        pipeline (kombu's publish batch).

        A batch is sent once, without the publish retry policy: if it fails, the messages are
        sent again one by one with it, as Celery's own retry would (a message of the failed
        batch may have arrived all the same: a duplicate delivery does nothing twice).
        """
        from config.celery import app

        send = app.amqp.send_task_message
        fresh = [uuid() for _ in range(self.ids)]
        messages = self.messages(session_id, app.thread_oid, fresh)
        with app.producer_or_acquire() as producer:
            if len(messages) > 1:
                try:
                    with producer.batch():
                        for name, message, options in messages:
                            send(producer, name, message, **options)
                    return
                except BatchPublishError:
                    logger.warning("could not send session %s in one batch; sending its messages one by one",
                                   session_id, exc_info=True)
                    messages = self.messages(session_id, app.thread_oid, fresh)  # the same ids
            for name, message, options in messages:
                send(producer, name, message, **options)


_prepared_plans: dict[tuple, Prepared | None] = {}


def prepared_plan(*, compiled: CompiledVersion, version_id: str, plan: Plan, user_id: str | None) -> Prepared | None:
    """The prepared messages of a plan, or None where each call must go through Celery's canvas.

    Celery's canvas is used where a message depends on more than the session: a chord (its
    header's results and counter are set up in the result backend as it is sent), a call from
    inside a task (the messages name it as their parent: the sweeper), eager mode, or sent events.
    """
    from config.celery import app

    if app.current_worker_task is not None or app.conf.task_always_eager or app.conf.task_send_sent_event:
        return None
    # The messages depend on the plan, the version (task types, timeouts), the owner and the
    # settings the time limits come from; `origin` names the process.
    key = (plan, version_id, user_id, settings.JUNCTION_DEFAULT_TASK_TIMEOUT, settings.JUNCTION_HARD_TIMEOUT_GRACE,
           os.getpid())
    try:
        return _prepared_plans[key]
    except KeyError:
        pass
    prepared = None
    if not chord_headers(plan):
        prepared = _prepare(compiled=compiled, version_id=version_id, plan=plan, user_id=user_id)
    if len(_prepared_plans) >= PREPARED_LIMIT:
        _prepared_plans.clear()
    _prepared_plans[key] = prepared
    return prepared


def _prepare(*, compiled: CompiledVersion, version_id: str, plan: Plan, user_id: str | None) -> Prepared | None:
    """Record the plan's messages twice: what differs between the two recordings are Celery's
    ids, which become slots. None if the recordings differ in anything else, or cannot be
    written as JSON (never so for Junction's messages: a guard, not a case)."""
    from config.celery import app, recorded_messages

    def record() -> tuple[str, list[dict[str, Any]]]:
        canvas = plan_canvas(session_id=SESSION_SLOT, version_id=version_id, compiled=compiled, plan=plan,
                             user_id=user_id)
        with recorded_messages() as recorded:
            canvas.apply_async()
        text = json.dumps([[r.name, *r.message] for r in recorded])
        return text, [r.options for r in recorded]

    try:
        (first, options), (second, _) = record(), record()
    except TypeError:  # not JSON
        logger.warning("plan %s of version %s cannot be prepared", plan.render(), version_id)
        return None
    if not options:
        return None  # nothing recorded: let Celery's canvas say why
    named = {SESSION_SLOT: _SESSION, app.thread_oid: _REPLY_TO}
    pattern = re.compile("(" + "|".join([*(re.escape(name) for name in named), _UUID]) + ")")
    # Literal text at even positions, a session id, reply-to or UUID at odd ones.
    first_pieces, second_pieces = pattern.split(first), pattern.split(second)
    if len(first_pieces) != len(second_pieces):
        return None
    text: list[str] = [""]
    slots: list[int] = []
    ids: dict[str, int] = {}
    pairs: set[tuple[str, str]] = set()
    for index, (a, b) in enumerate(zip(first_pieces, second_pieces)):
        if index % 2 == 0 or a == b and a not in named:
            if a != b:
                return None
            text[-1] += a  # the same in both: a literal (the version's id, the owner's…)
            continue
        if a in named or b in named:
            if a != b:
                return None
            slots.append(named[a])
        else:  # an id Celery made: the same one wherever it appears, fresh on every call
            pairs.add((a, b))
            slots.append(ids.setdefault(a, len(ids)))
        text.append("")
    if len(pairs) != len(ids) or len({b for _, b in pairs}) != len(ids):
        return None  # an id of one recording is not always the same id in the other
    return Prepared(text=tuple(text), slots=tuple(slots), ids=len(ids), options=tuple(options))
