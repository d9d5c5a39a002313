"""Server-sent events: the wire format."""

from __future__ import annotations

import json
from typing import Any

SSE_HEADERS = [
    (b"Content-Type", b"text/event-stream; charset=utf-8"),
    (b"Cache-Control", b"no-cache"),
    (b"X-Accel-Buffering", b"no"),
    (b"Connection", b"keep-alive"),
]


def sse_encode(event: str, data: dict[str, Any], event_id: str | None = None) -> bytes:
    """One SSE frame; ``id:`` comes first so a client records it before dispatching."""
    lines = []
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.append(f"event: {event}")
    lines.append(f"data: {json.dumps(data, separators=(',', ':'))}")
    return ("\n".join(lines) + "\n\n").encode()
