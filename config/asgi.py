"""ASGI entry point: `uvicorn config.asgi:application` (the Procfile's `web`).

Waiting is asynchronous: a run's `Prefer: wait` and `/events` await the session's events on
the event loop (interactions/waiting.py, interactions/event_stream.py), so a thousand waiting
callers cost a thousand sockets and coroutines, not a thousand threads. Everything else is
Django and DRF as usual, synchronous, in threads.

Two changes to Django's ASGI handler, both about threads:
- Out of the box it gives every request a new thread for its synchronous code that lives
  until the request ends: it would sit idle through every wait, and it takes its database
  connection with it when it goes, so `CONN_MAX_AGE` never reuses one. Here a request's
  synchronous code runs on one of JUNCTION_ASGI_THREADS long-lived threads ("lanes") instead,
  the least busy when the request arrives (asgiref's `ThreadSensitiveContext(executor=…)`): a
  request still sees a single thread, as Django's thread-sensitive code needs, and connections
  persist per lane as under a threaded WSGI server.
- Its async middleware chain makes each synchronous middleware method a hop between the loop
  and a thread (about twenty per request), and a synchronous-only middleware would hold its
  thread through a wait. Here the synchronous chain and view run in one hop; a run that waits
  comes back from it as a 202 carrying a `PendingWait`, which is completed afterwards on the
  event loop, with no thread held.
"""
from __future__ import annotations

import asyncio
import itertools
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor

from asgiref.sync import ThreadSensitiveContext, sync_to_async

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup(set_prefix=False)

from django.conf import settings  # noqa: E402
from django.core.handlers.asgi import ASGIHandler  # noqa: E402
from django.core.handlers.base import BaseHandler  # noqa: E402

from config.limits import AsgiRequestSizeLimit  # noqa: E402
from interactions import events, holding  # noqa: E402
from interactions.waiting import waits_on_event_loop  # noqa: E402


class Lane(ThreadPoolExecutor):
    """One long-lived thread that runs requests' synchronous calls, counting those queued."""

    def __init__(self, index: int):
        super().__init__(max_workers=1, thread_name_prefix=f"junction-lane-{index}")
        self.queued = 0
        self._count = threading.Lock()

    def submit(self, fn, /, *args, **kwargs) -> Future:
        with self._count:
            self.queued += 1
        future = super().submit(fn, *args, **kwargs)
        future.add_done_callback(self._done)
        return future

    def _done(self, _future: Future) -> None:
        with self._count:
            self.queued -= 1


class JunctionASGIHandler(ASGIHandler):
    """Django's ASGI handler with synchronous code on long-lived lanes (see the module doc)."""

    def __init__(self, lanes: int):
        super().__init__()
        self.lanes = [Lane(index) for index in range(max(1, lanes))]
        self.turn = itertools.count()
        # The same middleware in the synchronous mode, for requests to synchronous views.
        self.sync_handler = BaseHandler()
        self.sync_handler.load_middleware(is_async=False)

    async def get_response_async(self, request):
        """Run the synchronous middleware chain and view in one hop to the request's lane.

        Django's own async chain makes each synchronous middleware method a hop between the
        loop and a thread (about twenty per request). A run that waits comes back as a 202
        carrying a `PendingWait`, completed here on the event loop (interactions/waiting.py).
        """
        waits_on_event_loop(request)
        response = await sync_to_async(self.sync_handler.get_response)(request)
        pending = getattr(response, "pending_wait", None)
        if pending is not None:
            del response.pending_wait
            response = await pending.complete(response)
        return response

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            return await self.lifespan(receive, send)
        if scope["type"] != "http":  # as Django's own handler: no websockets
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        events.serve_on_this_loop()
        # The least busy lane; among equals, the next in turn (most of the time all are idle).
        start = next(self.turn) % len(self.lanes)
        lane = min(self.lanes[start:] + self.lanes[:start], key=lambda lane: lane.queued)
        async with ThreadSensitiveContext(executor=lane):
            await self.handle(scope, receive, send)

    async def lifespan(self, receive, send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                events.serve_on_this_loop()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await holding.hand_over()  # timers held for waiting calls go to the workers
                await events.close_server_loop()
                for lane in self.lanes:
                    await asyncio.get_running_loop().run_in_executor(None, lane.shutdown)
                await send({"type": "lifespan.shutdown.complete"})
                return


# A body past JUNCTION_MAX_REQUEST_BYTES is refused as it arrives (413), before Django's
# handler would spool it whole to a temporary file (config/limits.py).
application = AsgiRequestSizeLimit(JunctionASGIHandler(lanes=settings.JUNCTION_ASGI_THREADS))
