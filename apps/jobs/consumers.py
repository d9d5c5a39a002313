"""Live streams of job events: SSE (v1 contract) and WebSocket, both fed by the JobEvent log.

Every stream starts from the database and only then listens: a group message carries its
event, which a stream sends at once when it is the very next one, and is otherwise a wake-up to
read the log again; a slow poll covers a lost wake-up. Nothing is lost by a dropped push, a
restart or a reconnect (SSE ``Last-Event-ID`` replays exactly what was missed).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import uuid
import weakref
from dataclasses import dataclass
from urllib.parse import parse_qs

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.http import AsyncHttpConsumer
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.http.request import split_domain_port, validate_host
from django.utils import timezone
from prometheus_client import Gauge

from apps.accounts import selectors as account_selectors
from apps.core.errors import (
    Forbidden,
    InvalidInput,
    NotAuthenticated,
    NotFound,
    ServiceError,
    error_envelope,
)
from apps.core.problems import problem_body
from apps.core.request_id import request_id_from_header
from apps.core.sse import SSE_HEADERS, sse_encode
from apps.jobs import events, selectors
from apps.jobs.streams import Feed, StreamEvent
from apps.uploads import selectors as upload_selectors

logger = logging.getLogger("image2model.jobs")

V1_HEADERS = [(b"X-API-Version", b"1"), (b"Link", b'</api/v2/docs>; rel="successor-version"')]
V2_HEADERS = [(b"X-API-Version", b"2")]
OPEN_STREAMS = Gauge("image2model_open_streams", "Streams open now", ["transport"])
INVALID_ID = {
    "batch": "Invalid task ID format. Expected UUID format.",
    "job": "Invalid job ID format. Expected UUID format.",
}


# The streams of a process share the channel layer's Redis pool, and redis-py refuses a call
# at once when its pool (100 connections) is busy. Thousands of streams that end (or open)
# together must queue for it instead, or their group calls fail.
LAYER_CALLS_AT_ONCE = 32
_layer_gates: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
    weakref.WeakKeyDictionary()
)


def _layer_gate() -> asyncio.Semaphore:
    loop = asyncio.get_running_loop()
    gate = _layer_gates.get(loop)
    if gate is None:
        gate = _layer_gates[loop] = asyncio.Semaphore(LAYER_CALLS_AT_ONCE)
    return gate


@dataclass
class StreamRequest:
    kind: str  # "batch" or "job"
    raw_id: str
    headers: dict[str, str]
    query: dict[str, str]
    session_user: object


def _request_from_scope(scope, kind: str, raw_id: str) -> StreamRequest:
    headers = {k.decode("latin1").lower(): v.decode("latin1") for k, v in scope.get("headers", [])}
    query = {k: v[-1] for k, v in parse_qs(scope.get("query_string", b"").decode()).items()}
    return StreamRequest(kind, raw_id, headers, query, scope.get("user"))


def _open_feed(request: StreamRequest) -> tuple[Feed, str]:
    """Authorize and find the stream's batch or job (sync: database). Raises ServiceError."""
    try:
        object_id = uuid.UUID(request.raw_id)
    except ValueError:
        raise InvalidInput(INVALID_ID[request.kind]) from None
    user = _user(request, f"{request.kind}:{object_id}")
    if request.kind == "batch":
        batch = upload_selectors.batch_get_for_owner(batch_id=object_id, owner=user)
        if batch is None:
            raise NotFound("Task not found")
        return Feed(batch_id=str(batch.id)), events.batch_group(batch.id)
    job = selectors.job_get_for_owner(job_id=object_id, owner=user)
    if job is None:
        raise NotFound("Job not found")
    return Feed(batch_id=str(job.batch_id), job_id=str(job.id)), events.job_group(job.id)


def _user(request: StreamRequest, resource: str):
    authorization = request.headers.get("authorization", "").strip()
    if authorization:
        scheme, _, key = authorization.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise NotAuthenticated("Not authenticated")
        api_key = account_selectors.api_key_authenticate(key.strip())
        if "read" not in api_key.scopes:
            raise Forbidden("API key lacks the 'read' scope")
        return api_key.owner
    # The signed-in session first: a page whose stream token expired keeps streaming.
    if request.session_user is not None and request.session_user.is_authenticated:
        return request.session_user
    if token := request.query.get("token"):
        user = account_selectors.stream_token_user(
            token, resource=resource, max_age=settings.STREAM_TOKEN_MAX_AGE_SECONDS
        )
        if user is None:
            raise NotAuthenticated("Invalid or expired stream token")
        return user
    raise NotAuthenticated("Not authenticated")


_EVENT_ID = re.compile(r"^(\d{1,18})(?:\.([12]))?$")


def _last_event_id(request: StreamRequest) -> tuple[int, int] | None:
    """(sequence, frame) from ``Last-Event-ID`` (``17``, ``17.1`` or ``17.2``), if sent."""
    raw = (request.headers.get("last-event-id") or request.query.get("last_event_id") or "").strip()
    if not raw:
        return None
    match = _EVENT_ID.match(raw)
    if match is None:
        raise InvalidInput("Last-Event-ID must be an id this stream sent, like 17 or 17.1")
    return int(match.group(1)), int(match.group(2) or 0)


def _check_host_and_method(scope, headers: dict[bytes, bytes]) -> None:
    if scope.get("method", "GET") not in {"GET", "HEAD"}:
        raise ServiceError("Method Not Allowed", status_code=405)
    host, _ = split_domain_port(headers.get(b"host", b"").decode("latin1"))
    allowed = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed:
        allowed = [".localhost", "127.0.0.1", "[::1]"]
    if not host or not validate_host(host, allowed):
        raise InvalidInput("Invalid Host header")


def _timeout(request: StreamRequest) -> int:
    raw = request.query.get("timeout", str(settings.STREAM_DEFAULT_TIMEOUT_SECONDS))
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if not 1 <= value <= 86400:
        raise ServiceError(
            "Request validation failed",
            status_code=422,
            error_code="VALIDATION_ERROR",
            details={
                "validation_errors": [
                    {
                        "field": "query -> timeout",
                        "message": "must be a whole number from 1 to 86400",
                        "type": "value_error",
                    }
                ]
            },
        )
    return value


class _FeedStream:
    """What SSE and WebSocket share: open the feed, read it again on every wake-up."""

    transport = ""
    feed: Feed
    group: str | None = None
    ticker: asyncio.Task | None = None
    finished = False

    async def open_stream(self, kind: str, raw_id: str) -> StreamRequest:
        events.serving_loop_register(asyncio.get_running_loop())
        request = _request_from_scope(self.scope, kind, raw_id)
        self.feed, group = await database_sync_to_async(_open_feed)(request)
        last_id = _last_event_id(request)
        if last_id is not None:
            await database_sync_to_async(self.feed.replay_until)(*last_id)
        self.lock = asyncio.Lock()
        self.group = group
        async with _layer_gate():
            await self.channel_layer.group_add(group, self.channel_name)
        OPEN_STREAMS.labels(self.transport).inc()
        return request

    async def read_feed(self, message: dict | None = None) -> None:
        async with self.lock:
            if self.finished:
                return
            if not self.feed.done:
                # A pushed event that is exactly the next one needs no read of the log: with
                # thousands of streams on one batch, those reads (one database thread per
                # process) were what made a broadcast slow. Anything else reads the log.
                stream_events = self.feed.push(message) if message else None
                if stream_events is None:
                    stream_events = await database_sync_to_async(self.feed.load)()
                for event in stream_events:
                    await self.emit(event)
            if self.feed.done:  # also when a replay found the client had everything
                self.finished = True
                await self.finish()

    async def dispatch(self, message) -> None:
        # Channels' dispatch first runs close_old_connections() through sync_to_async: a hop
        # to the process's one sync thread for every message of every stream. With thousands
        # of streams that hop was most of a broadcast (py-spy: aclose_old_connections ~32 %).
        # These consumers reach the database only through database_sync_to_async, which
        # closes old connections itself before and after each call, so the hop is skipped.
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def job_event(self, message) -> None:  # group message "job.event"
        await self.read_feed(message)

    async def __call__(self, scope, receive, send):
        # However the instance ends (disconnect, StopConsumer, or the server cancelling it once
        # the response is complete), it leaves its group and stops its ticker.
        try:
            await super().__call__(scope, receive, send)
        finally:
            await asyncio.shield(self.leave())

    async def leave(self) -> None:
        if self.ticker is not None:
            if self.ticker is not asyncio.current_task():
                self.ticker.cancel()
            self.ticker = None
        if self.group is not None:
            group, self.group = self.group, None
            OPEN_STREAMS.labels(self.transport).dec()
            try:
                async with _layer_gate():
                    await self.channel_layer.group_discard(group, self.channel_name)
            except Exception:  # the stream still ends; the membership expires on its own
                logger.warning("stream could not leave group %s", group, exc_info=True)

    async def emit(self, event: StreamEvent) -> None:
        raise NotImplementedError

    async def finish(self) -> None:
        raise NotImplementedError


class EventStreamConsumer(_FeedStream, AsyncHttpConsumer):
    """SSE: ``/api/v1/status/tasks/{id}/stream`` and ``/api/v1/status/jobs/{id}/stream``."""

    transport = "sse"
    kind = "batch"

    async def http_request(self, message) -> None:
        # The stock consumer stops as soon as handle() returns; a stream must stay open and
        # keep receiving group messages, so handle() only sets the stream up.
        if "body" in message:
            self.body.append(message["body"])
        if not message.get("more_body"):
            await self.handle(b"".join(self.body))

    async def handle(self, body: bytes) -> None:
        raw_id = self.scope["url_route"]["kwargs"]["object_id"]
        headers = dict(self.scope.get("headers", []))
        self.request_id = request_id_from_header(
            headers.get(b"x-request-id", b"").decode("latin1")
        ).encode()
        try:
            # Streams are routed before Django, so its host and method checks are done here.
            _check_host_and_method(self.scope, headers)
            request = await self.open_stream(self.kind, raw_id)
            timeout = _timeout(request)
        except ServiceError as error:
            await self.leave()
            await self.send_error(error)
            raise StopConsumer() from None
        await self.send_headers(
            status=200, headers=[*SSE_HEADERS, (b"X-Request-ID", self.request_id)]
        )
        self.task_id = str(self.feed.job_id or self.feed.batch_id)
        await self.read_feed()
        if not self.finished:
            self.ticker = asyncio.create_task(self.tick(timeout))

    async def send_error(self, error: ServiceError) -> None:
        body = error_envelope(
            status_code=error.status_code,
            message=error.message,
            error_code=error.code,
            details=error.details,
        )
        headers = [(b"Content-Type", b"application/json"), (b"X-Request-ID", self.request_id)]
        if error.status_code == 405:
            headers.append((b"Allow", b"GET, HEAD"))
        await self.send_response(error.status_code, json.dumps(body).encode(), headers=headers)

    async def emit(self, event: StreamEvent) -> None:
        await self.send_body(sse_encode(event.name, event.data, event.id), more_body=True)

    async def finish(self) -> None:
        await self.leave()
        await self.send_body(b"", more_body=False)

    async def tick(self, timeout: int) -> None:
        """Heartbeats, the slow poll that covers lost wake-ups, and the timeout."""
        started = last_beat = time.monotonic()
        while True:
            await asyncio.sleep(settings.STREAM_POLL_SECONDS)
            await self.read_feed()
            now = time.monotonic()
            if self.finished:
                return
            if now - started >= timeout:
                async with self.lock:
                    await self.emit(
                        StreamEvent(
                            "connection_timeout",
                            {
                                "status": "timeout",
                                "message": f"Stream closed after {timeout} seconds",
                                "task_id": self.task_id,
                                "timestamp": timezone.now().isoformat(),
                            },
                        )
                    )
                    self.finished = True
                    await self.finish()
                return
            if now - last_beat >= settings.SSE_HEARTBEAT_SECONDS:
                last_beat = now
                async with self.lock:
                    await self.emit(
                        StreamEvent(
                            "heartbeat",
                            {
                                "status": "heartbeat",
                                "task_id": self.task_id,
                                "timestamp": timezone.now().isoformat(),
                            },
                        )
                    )

    async def disconnect(self) -> None:
        await self.leave()


class V1EventStreamConsumer(EventStreamConsumer):
    """SSE of API v1: like every v1 answer, it says its version and points to v2."""

    async def send_headers(self, *, status=200, headers=None):
        await super().send_headers(status=status, headers=[*(headers or []), *V1_HEADERS])


class V1JobEventStreamConsumer(V1EventStreamConsumer):
    kind = "job"


class V2EventStreamConsumer(EventStreamConsumer):
    """SSE of API v2 (``/api/v2/batches/{id}/events``): the same stream, errors as problem
    details, and ``X-API-Version: 2`` on every answer."""

    async def send_headers(self, *, status=200, headers=None):
        await super().send_headers(status=status, headers=[*(headers or []), *V2_HEADERS])

    async def send_error(self, error: ServiceError) -> None:
        detail, errors = error.message, None
        if isinstance(error, NotAuthenticated) and not isinstance(error, Forbidden):
            status, code = 401, "UNAUTHORIZED"
        elif isinstance(error, Forbidden):
            status, code = 403, "FORBIDDEN"
        elif isinstance(error, NotFound):
            status, code = 404, "NOT_FOUND"
            detail = "No such job." if self.kind == "job" else "No such batch."
        elif error.message in INVALID_ID.values():  # as the REST endpoints answer a bad id
            status, code = 422, "VALIDATION_ERROR"
            detail = "The request has invalid fields."
            field = "job_id" if self.kind == "job" else "batch_id"
            errors = [{"field": field, "in": "path", "message": "must be a UUID", "type": "uuid"}]
        else:
            status, code = error.status_code, error.problem_code or error.code
        body = problem_body(
            status=status,
            detail=detail,
            instance=self.scope["path"],
            request_id=self.request_id.decode(),
            code=code,
            errors=errors,
        )
        headers = [
            (b"Content-Type", b"application/problem+json"),
            (b"X-Request-ID", self.request_id),
        ]
        if status == 401:
            headers.append((b"WWW-Authenticate", b'Bearer realm="image2model"'))
        if status == 405:
            headers.append((b"Allow", b"GET, HEAD"))
        await self.send_response(status, json.dumps(body).encode(), headers=headers)


class V2JobEventStreamConsumer(V2EventStreamConsumer):
    kind = "job"


class EventSocketConsumer(_FeedStream, AsyncJsonWebsocketConsumer):
    """WebSocket: ``/ws/batches/{id}/`` and ``/ws/jobs/{id}/``; the same events as JSON."""

    transport = "websocket"
    kind = "batch"

    async def connect(self) -> None:
        raw_id = self.scope["url_route"]["kwargs"]["object_id"]
        try:
            await self.open_stream(self.kind, raw_id)
        except ServiceError as error:
            await self.leave()
            await self.close(code=4000 + error.status_code)  # 4403, 4404, 4400
            return
        await self.accept()
        await self.read_feed()
        if not self.finished:
            self.ticker = asyncio.create_task(self.poll())

    async def poll(self) -> None:
        while not self.finished:
            await asyncio.sleep(settings.STREAM_POLL_SECONDS)
            await self.read_feed()

    async def emit(self, event: StreamEvent) -> None:
        await self.send_json({"event": event.name, "id": event.id, "data": event.data})

    async def finish(self) -> None:
        await self.leave()
        await self.close(code=1000)

    async def disconnect(self, code) -> None:
        await self.leave()


class JobEventSocketConsumer(EventSocketConsumer):
    kind = "job"
