"""What the sync and async clients share: retry decisions, Retry-After, request building, SSE.

Nothing here does I/O; :mod:`image2model_client.client` sends the requests and sleeps.
"""

from __future__ import annotations

import json
import os
import random
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import httpx

from image2model_client import errors
from image2model_client._version import __version__
from image2model_client.models import Event

USER_AGENT = f"image2model-client/{__version__} (+httpx {httpx.__version__})"
API_PREFIX = "/api/v2"
RETRY_STATUSES = frozenset({429, 503})
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
TERMINAL_EVENTS = frozenset({"task_completed", "task_failed"})
QUIET_EVENTS = frozenset({"heartbeat", "connection_timeout"})

ENV_URL = "IMAGE2MODEL_URL"
ENV_API_KEY = "IMAGE2MODEL_API_KEY"


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value: delay-seconds or an HTTP date.

    ``None`` when the header is missing or unreadable; never negative.
    """
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        if seconds != seconds or seconds in (float("inf"), float("-inf")):  # NaN, inf
            return None
        return max(0.0, seconds)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    now = now or datetime.now(timezone.utc)
    return max(0.0, (when - now).total_seconds())


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry.

    - ``max_attempts``: total tries of one request (1 turns retries off).
    - 429 and 503 are retried for any method: the server refused the request without doing
      it. So is a 409 with ``Retry-After`` to a request with an ``Idempotency-Key`` (the first
      request with that key is still being processed). The wait is the ``Retry-After`` the
      server sent, or the backoff when it sent none. A ``Retry-After`` longer than
      ``max_retry_after`` is not waited for: the error is raised.
    - Connection failures are retried for idempotent requests only (GET, DELETE, and POSTs
      that carry an ``Idempotency-Key``), except a failure to connect at all, which sent
      nothing and is always retried.
    - Backoff: ``backoff_base * 2**(attempt-1)``, with jitter, capped at ``backoff_max``.
    """

    max_attempts: int = 4
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    max_retry_after: float = 120.0

    def backoff(self, attempt: int) -> float:
        delay = min(self.backoff_max, self.backoff_base * (2 ** (attempt - 1)))
        return delay * (0.5 + random.random() / 2)  # noqa: S311  jitter, not cryptography

    def delay_for_response(self, response: httpx.Response, attempt: int) -> float | None:
        """Seconds to wait before trying again, or ``None`` to give up with this answer."""
        if attempt >= self.max_attempts:
            return None
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        if response.status_code == 409:
            # IDEMPOTENCY_KEY_IN_USE: the first request with this key is still running.
            in_use = retry_after is not None and "idempotency-key" in response.request.headers
            return min(retry_after, self.max_retry_after) if in_use else None
        if response.status_code not in RETRY_STATUSES:
            return None
        if retry_after is None:
            return self.backoff(attempt)
        if retry_after > self.max_retry_after:
            return None
        return retry_after

    def delay_for_error(
        self, error: Exception, request: httpx.Request, attempt: int
    ) -> float | None:
        """Seconds to wait before trying again after a transport error, or ``None``."""
        if attempt >= self.max_attempts or not isinstance(error, httpx.TransportError):
            return None
        never_sent = isinstance(error, (httpx.ConnectError, httpx.ConnectTimeout))
        if never_sent or is_idempotent(request):
            return self.backoff(attempt)
        return None


def is_idempotent(request: httpx.Request) -> bool:
    return request.method in IDEMPOTENT_METHODS or "idempotency-key" in request.headers


@dataclass(frozen=True)
class RetryInfo:
    """Given to ``on_retry`` before each wait: what failed, and how long the client waits."""

    attempt: int  # the attempt that failed, from 1
    delay: float
    method: str
    url: str
    status: int | None = None  # the answer's status, or None after a transport error
    retry_after: str | None = None  # the Retry-After header as sent
    error: Exception | None = None


RetryHook = Callable[[RetryInfo], None]


def new_idempotency_key() -> str:
    return str(uuid.uuid4())


def normalize_base_url(url: str | None) -> str:
    """``http://host:port`` (a path prefix kept, trailing slash and ``/api/v2`` removed)."""
    url = (url or os.environ.get(ENV_URL) or "").strip()
    if not url:
        raise errors.ConfigurationError(
            f"no server URL: set {ENV_URL} or pass the URL (--url), "
            "for example http://127.0.0.1:8000"
        )
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise errors.ConfigurationError(
            f"the server URL must look like http://host:port, not {url!r}"
        )
    path = parts.path.rstrip("/")
    for suffix in (API_PREFIX, "/api"):
        if path.endswith(suffix):
            path = path[: -len(suffix)]
    return f"{parts.scheme}://{parts.netloc}{path}"


def resolve_api_key(api_key: str | None) -> str | None:
    key = api_key if api_key is not None else os.environ.get(ENV_API_KEY)
    key = (key or "").strip()
    return key or None


def default_headers(api_key: str | None) -> dict[str, str]:
    headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    return headers


def same_origin(url: str, base_url: str) -> bool:
    a, b = urlsplit(url), urlsplit(base_url)
    return (a.scheme, a.netloc) == (b.scheme, b.netloc)


def clean_params(params: dict[str, Any]) -> dict[str, Any]:
    """Query parameters without ``None`` values, datetimes as ISO 8601."""
    out: dict[str, Any] = {}
    for name, value in params.items():
        if value is None:
            continue
        if isinstance(value, datetime):
            value = value.isoformat()
        out[name] = str(value) if not isinstance(value, (str, int, float)) else value
    return out


def check_wait(wait: int | None) -> int | None:
    if wait is None:
        return None
    if not 1 <= int(wait) <= 60:
        raise ValueError("wait must be from 1 to 60 seconds (Prefer: wait=N)")
    return int(wait)


def json_or_error(response: httpx.Response) -> Any:
    if response.status_code >= 400:
        raise errors.error_from_response(response)
    if response.status_code == 204 or not response.content:
        return None
    return response.json()


def stream_id(value: str | None) -> str | None:
    return value if value not in (None, "") else None


class SSEDecoder:
    """Turns the lines of a ``text/event-stream`` into :class:`Event` objects.

    Follows the SSE rules: fields ``event``, ``id``, ``data`` (joined with newlines), comment
    lines starting with ``:`` ignored, a blank line dispatches. ``data`` is decoded as JSON when
    it is JSON. The id of the last dispatched event with an id is kept in ``last_event_id``.
    """

    def __init__(self, last_event_id: str | None = None) -> None:
        self.last_event_id = last_event_id
        self._reset()

    def reset_frame(self) -> None:
        """Forget a half-received event (after a dropped connection)."""
        self._reset()

    def _reset(self) -> None:
        self._name = ""
        self._id: str | None = None
        self._data: list[str] = []

    def feed(self, line: str) -> Event | None:
        line = line.rstrip("\r\n")
        if line == "":
            if not self._data and not self._name:
                self._reset()
                return None
            raw = "\n".join(self._data)
            try:
                data: Any = json.loads(raw) if raw else {}
            except ValueError:
                data = raw
            event = Event(name=self._name or "message", id=self._id, data=data)
            if self._id is not None:
                self.last_event_id = self._id
            self._reset()
            return event
        if line.startswith(":"):
            return None
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            self._name = value
        elif field == "data":
            self._data.append(value)
        elif field == "id" and "\0" not in value:
            self._id = value
        return None

    def feed_lines(self, lines: Iterable[str]) -> Iterator[Event]:
        for line in lines:
            event = self.feed(line)
            if event is not None:
                yield event


def stream_ended_for_good(last_event_id: str | None, events_this_connection: int) -> bool:
    """A stream that closed without sending anything after a terminal id has nothing more."""
    return events_this_connection == 0 and bool(last_event_id) and last_event_id.endswith(".2")
