"""Requests run their sync code on kept threads, one request per thread at a time (0022)."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import pytest
from asgiref.sync import sync_to_async

import image2model.asgi
from image2model.request_threads import KeptThreadsASGIHandler, RequestThreads

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def handler(settings):
    settings.ROOT_URLCONF = "tests.wiring.thread_urls"
    return KeptThreadsASGIHandler()


async def get(handler, path: str) -> dict:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"testserver")],
        "client": ("127.0.0.1", 40000),
        "server": ("testserver", 80),
    }
    messages = [{"type": "http.request", "body": b"", "more_body": False}]
    sent: list[dict] = []

    async def receive():
        if messages:
            return messages.pop()
        await asyncio.Event().wait()  # no disconnect: Django cancels this when it is done

    async def send(message):
        sent.append(message)

    await handler(scope, receive, send)
    assert sent[0]["status"] == 200, sent
    return json.loads(b"".join(m.get("body", b"") for m in sent[1:]))


def test_the_served_application_uses_kept_threads():
    router = image2model.asgi.application.application_mapping["http"]
    assert isinstance(router.routes[-1].callback, KeptThreadsASGIHandler)


def test_one_request_after_another_takes_the_same_thread(handler):
    async def scenario():
        return [await get(handler, "/where") for _ in range(3)]

    first, second, third = asyncio.run(scenario())
    assert first["thread"] == second["thread"] == third["thread"] != threading.get_ident()
    # Each request hands its database connection back when it ends, as before.
    assert not second["connection_open_at_start"] and not third["connection_open_at_start"]
    assert handler.threads.idle_count == 1


def test_requests_at_the_same_time_have_threads_of_their_own(handler):
    async def scenario():
        together = await asyncio.gather(get(handler, "/slow"), get(handler, "/slow"))
        after = await get(handler, "/where")
        return together, after

    (one, two), after = asyncio.run(scenario())
    assert one["thread"] != two["thread"]
    assert after["thread"] in {one["thread"], two["thread"]}
    assert handler.threads.idle_count == 2


def test_the_thread_of_a_request_that_raised_is_not_kept(handler, monkeypatch):
    async def failing(scope, receive, send):
        await sync_to_async(threading.get_ident)()  # it ran on its request thread
        raise RuntimeError("broken")

    async def scenario():
        first = await get(handler, "/where")
        with monkeypatch.context() as patch:
            patch.setattr(handler, "handle", failing)
            with pytest.raises(RuntimeError, match="broken"):
                await get(handler, "/where")
        return first, await get(handler, "/where")

    first, after = asyncio.run(scenario())
    # The kept thread served the failing request and was not kept: a new one serves the next.
    assert after["thread"] != first["thread"]
    assert handler.threads.idle_count == 1


def test_a_thread_still_busy_is_not_kept_and_ends_when_its_work_is_done():
    threads = RequestThreads()
    thread = threads.take()
    release = threading.Event()
    work = thread.submit(release.wait, 10)
    threads.give_back(thread)  # its request ended, but the work goes on (a cancelled request)
    assert threads.idle_count == 0 and threads.take() is not thread
    release.set()
    assert work.result(timeout=5) is True
    deadline = time.monotonic() + 5
    while any(t.is_alive() for t in thread._threads) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not any(t.is_alive() for t in thread._threads)


def test_only_so_many_idle_threads_are_kept():
    threads = RequestThreads(kept=2)
    taken = [threads.take() for _ in range(3)]
    for thread in taken:
        thread.submit(int).result()
        threads.give_back(thread)
    assert threads.idle_count == 2
    assert taken[2]._shutdown and not taken[0]._shutdown
