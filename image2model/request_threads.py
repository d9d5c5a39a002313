"""Django's ASGI handler, with each request's sync code on a kept thread instead of a new one.

Django runs a request's sync code (the middleware chain, the view) on a thread of its own:
``ASGIHandler`` enters asgiref's ``ThreadSensitiveContext`` per request, which starts a new
thread and ends it, through the default executor, when the request is done. Under load that
start and join, and a new database wrapper in every new thread, cost about a tenth of a small
request's CPU (decision 0022).

Here a finished request hands its thread back, and the next request takes a free one, as a
threaded WSGI server does. A request still has a thread to itself while it runs, so requests
never share a thread at the same time. A thread still busy when its request ends is not kept:
work can outlive a request that was cancelled when its client went away.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor

from asgiref.sync import ThreadSensitiveContext
from django.core.handlers.asgi import ASGIHandler

KEPT_THREADS = 64  # idle threads kept; more requests at once start more threads, as before


class RequestThread(ThreadPoolExecutor):
    """One thread; knows how many calls it has not finished yet."""

    def __init__(self, name: str) -> None:
        super().__init__(max_workers=1, thread_name_prefix=name)
        self._lock = threading.Lock()
        self._unfinished = 0

    def submit(self, fn, /, *args, **kwargs) -> Future:
        with self._lock:
            self._unfinished += 1
        try:
            future = super().submit(fn, *args, **kwargs)
        except BaseException:
            self._done(None)
            raise
        future.add_done_callback(self._done)
        return future

    def _done(self, _future: Future | None) -> None:
        with self._lock:
            self._unfinished -= 1

    @property
    def idle(self) -> bool:
        with self._lock:
            return self._unfinished == 0


class RequestThreads:
    """The idle request threads of one process (used by one event loop)."""

    def __init__(self, kept: int = KEPT_THREADS) -> None:
        self.kept = kept
        self._idle: list[RequestThread] = []
        self._started = 0

    def take(self) -> RequestThread:
        if self._idle:
            return self._idle.pop()
        self._started += 1
        return RequestThread(f"request-{self._started}")

    def give_back(self, thread: RequestThread, keep: bool = True) -> None:
        if keep and thread.idle and len(self._idle) < self.kept:
            self._idle.append(thread)
        else:
            thread.shutdown(wait=False)  # it ends once its last call has finished

    @property
    def idle_count(self) -> int:
        return len(self._idle)


class KeptThreadsASGIHandler(ASGIHandler):
    """``ASGIHandler`` whose requests run their sync code on kept threads."""

    def __init__(self) -> None:
        super().__init__()
        self.threads = RequestThreads()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        thread = self.threads.take()
        ended = False
        try:
            async with ThreadSensitiveContext(executor=thread):
                await self.handle(scope, receive, send)
            ended = True
        finally:
            # A request that raised or was cancelled may not have reached request_finished,
            # which hands its database connection back: its thread is not kept (it ends).
            self.threads.give_back(thread, keep=ended)


def get_asgi_application() -> KeptThreadsASGIHandler:
    """As ``django.core.asgi.get_asgi_application``, with kept request threads."""
    import django

    django.setup(set_prefix=False)
    return KeptThreadsASGIHandler()
