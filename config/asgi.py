"""ASGI entry point: `uvicorn config.asgi:application` (the Procfile's `web`).

Waiting is asynchronous: the run endpoint's `Prefer: wait` and `/events` await the session's
events on the event loop (interactions/waiting.py, interactions/event_stream.py), so a thousand
waiting callers cost a thousand sockets and coroutines, not a thousand threads. Everything else
is Django and DRF as usual, synchronous, run by Django's ASGI handler in threads.

One change to Django's handler: which threads. Out of the box it gives every request a new
thread for its synchronous code (request signals, middleware, the view) that lives until the
request ends. That thread would sit idle through every wait, and it takes its database
connection with it when it goes, so `CONN_MAX_AGE` never reuses one. Here a request's
synchronous code runs instead on one of JUNCTION_ASGI_THREADS long-lived threads ("lanes"),
the least busy when the request arrives: a request still sees a single thread (what Django's
thread-sensitive code needs), connections persist per lane as under a threaded WSGI server,
and a waiting request holds no thread at all.
"""
from __future__ import annotations

import asyncio
import itertools
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor

from asgiref.sync import ThreadSensitiveContext, iscoroutinefunction, sync_to_async

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup(set_prefix=False)

from django.conf import settings  # noqa: E402
from django.core.handlers.asgi import ASGIHandler  # noqa: E402
from django.core.handlers.base import BaseHandler  # noqa: E402
from django.http import Http404  # noqa: E402
from django.urls import get_resolver  # noqa: E402

from interactions import events  # noqa: E402


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
        """Serve a synchronous view with one hop to the request's lane, an async view on the loop.

        Through Django's async middleware chain, each synchronous middleware method is its own
        hop between the loop and a thread (about twenty per request); only async views (the
        waiting paths) need that chain.
        """
        if self.async_view(request.path_info):
            return await super().get_response_async(request)
        return await sync_to_async(self.sync_handler.get_response)(request)

    @staticmethod
    def async_view(path: str) -> bool:
        try:
            match = get_resolver().resolve(path)
        except Http404:
            return False
        return iscoroutinefunction(match.func)

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            return await self.lifespan(receive, send)
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
                await events.close_server_loop()
                for lane in self.lanes:
                    await asyncio.get_running_loop().run_in_executor(None, lane.shutdown)
                await send({"type": "lifespan.shutdown.complete"})
                return


application = JunctionASGIHandler(lanes=settings.JUNCTION_ASGI_THREADS)
