"""A deliberately small HTTP/1.1 client on asyncio streams, so the client is never the bottleneck.

httpx spends more CPU per request than the server under test on a 2-core machine; this client
keeps connections alive, sends pre-built requests and parses just enough of the answer (status,
headers, a Content-Length or chunked body). ``SseStream`` follows a server-sent event stream and
reports each ``id:`` line with the moment it arrived.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")
HOST = "127.0.0.1"


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


async def read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    raw = await reader.readuntil(b"\r\n\r\n")
    lines = raw.decode("latin1").split("\r\n")
    status = int(lines[0].split()[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if ":" in line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return status, headers


def request_head(
    method: str, path: str, port: int, headers: dict[str, str] | None, body_length: int | None
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {HOST}:{port}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if body_length is not None:
        lines.append(f"Content-Length: {body_length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin1")


class Connection:
    """One keep-alive connection; requests on it go one after another."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, port: int):
        self.reader, self.writer, self.port = reader, writer, port

    @classmethod
    async def open(cls, port: int) -> Connection:
        reader, writer = await asyncio.open_connection(HOST, port, limit=1 << 20)
        return cls(reader, writer, port)

    async def request(
        self,
        method: str,
        path: str,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
    ) -> Response:
        length = len(body) if body is not None else None
        self.writer.write(request_head(method, path, self.port, headers, length))
        if body:
            self.writer.write(body)
        await self.writer.drain()
        status, response_headers = await read_head(self.reader)
        return Response(status, response_headers, await self._body(response_headers))

    async def _body(self, headers: dict[str, str]) -> bytes:
        if "content-length" in headers:
            return await self.reader.readexactly(int(headers["content-length"]))
        if headers.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int((await self.reader.readline()).split(b";")[0].strip(), 16)
                if size == 0:
                    await self.reader.readline()
                    return b"".join(parts)
                parts.append(await self.reader.readexactly(size))
                await self.reader.readexactly(2)
        return await self.reader.read()

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()


async def hammer(
    port: int, path: str, headers: dict[str, str], total: int, concurrency: int
) -> tuple[float, list[float]]:
    """``total`` GETs over ``concurrency`` keep-alive connections: (elapsed s, latencies s)."""
    connections = [await Connection.open(port) for _ in range(concurrency)]
    remaining = total
    latencies: list[float] = []

    async def client(connection: Connection) -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            started = time.perf_counter()
            response = await connection.request("GET", path, headers)
            latencies.append(time.perf_counter() - started)
            if response.status != 200:
                raise RuntimeError(
                    f"GET {path} answered {response.status}: {response.body[:300]!r}"
                )

    started = time.perf_counter()
    try:
        await asyncio.gather(*(client(c) for c in connections))
    finally:
        elapsed = time.perf_counter() - started
        for connection in connections:
            await connection.close()
    return elapsed, latencies


class Dechunker:
    """Feed the raw bytes of a chunked body as they come; get the payload bytes back."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.remaining = 0
        self.state = "size"

    def feed(self, data: bytes) -> bytes:
        self.buffer += data
        out = bytearray()
        while True:
            if self.state == "size":
                end = self.buffer.find(b"\r\n")
                if end < 0:
                    break
                size = int(bytes(self.buffer[:end]).split(b";")[0].strip() or b"0", 16)
                del self.buffer[: end + 2]
                if size == 0:
                    self.state = "done"
                    break
                self.remaining, self.state = size, "data"
            elif self.state == "data":
                if not self.buffer:
                    break
                take = min(self.remaining, len(self.buffer))
                out += self.buffer[:take]
                del self.buffer[:take]
                self.remaining -= take
                if self.remaining == 0:
                    self.state = "crlf"
            elif self.state == "crlf":
                if len(self.buffer) < 2:
                    break
                del self.buffer[:2]
                self.state = "size"
            else:
                break
        return bytes(out)


class SseIdScanner:
    """The ``id:`` values of complete SSE lines, across reads that cut lines anywhere."""

    def __init__(self) -> None:
        self.partial = b""

    def feed(self, data: bytes) -> list[str]:
        lines = (self.partial + data).split(b"\n")
        self.partial = lines.pop()
        return [line[3:].strip().decode() for line in lines if line.startswith(b"id:")]


OnId = Callable[["SseStream", str, float], None]


class SseStream:
    """One SSE connection; ``on_id(stream, id, perf_counter)`` is called for every ``id:``."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, chunked: bool):
        self.reader, self.writer = reader, writer
        self.dechunker = Dechunker() if chunked else None
        self.scanner = SseIdScanner()
        self.seen: dict[str, float] = {}
        self.task: asyncio.Task[None] | None = None

    @classmethod
    async def open(
        cls, port: int, path: str, headers: dict[str, str], on_id: OnId | None = None
    ) -> SseStream:
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(
            request_head("GET", path, port, {**headers, "Accept": "text/event-stream"}, None)
        )
        await writer.drain()
        status, response_headers = await read_head(reader)
        if status != 200:
            body = await reader.read(500)
            writer.close()
            raise RuntimeError(f"stream {path} answered {status}: {body!r}")
        chunked = response_headers.get("transfer-encoding", "").lower() == "chunked"
        stream = cls(reader, writer, chunked)
        stream.task = asyncio.get_running_loop().create_task(stream._pump(on_id))
        return stream

    async def _pump(self, on_id: OnId | None) -> None:
        while True:
            data = await self.reader.read(65536)
            now = time.perf_counter()
            if not data:
                return
            if self.dechunker is not None:
                data = self.dechunker.feed(data)
            for event_id in self.scanner.feed(data):
                self.seen.setdefault(event_id, now)
                if on_id is not None:
                    on_id(self, event_id, now)

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()


class LoopThread:
    """An asyncio loop in a thread, so the main thread can stay synchronous (Django's ORM)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="bench-loop", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()

    def __enter__(self) -> LoopThread:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
