"""Baselines served by daphne exactly like image2model (``daphne ... bench.bare_asgi:application``).

* Any request except ``GET /stream``: read the whole body, discard it, answer 200 (the upload
  figure's baseline: what the server costs just to receive the bytes).
* ``GET /stream``: an endless event stream that sends one frame (``id: 0``) and then only waits
  for the client to leave (the stream figure's memory baseline: what an open stream costs
  daphne itself).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

Scope = dict[str, Any]
Message = dict[str, Any]


async def application(
    scope: Scope,
    receive: Callable[[], Awaitable[Message]],
    send: Callable[[Message], Awaitable[None]],
) -> None:
    if scope["type"] != "http":
        return
    if scope["method"] == "GET" and scope["path"] == "/stream":
        await _stream(receive, send)
        return
    received = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        received += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    body = b'{"received": %d}' % received
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _stream(
    receive: Callable[[], Awaitable[Message]], send: Callable[[Message], Awaitable[None]]
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")],
        }
    )
    await send(
        {
            "type": "http.response.body",
            "body": b"id: 0\nevent: hello\ndata: {}\n\n",
            "more_body": True,
        }
    )
    while (await receive())["type"] != "http.disconnect":
        pass
