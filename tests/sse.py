"""A small SSE client for tests: records every event (name, id, data) as it arrives."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import httpx


@dataclass(frozen=True)
class Event:
    name: str
    id: str | None
    data: dict


def parse(lines: Iterator[str]) -> Iterator[Event]:
    name, event_id, data = "message", None, []
    for line in lines:
        if line == "":
            if data:
                yield Event(name, event_id, json.loads("\n".join(data)))
            name, event_id, data = "message", None, []
        elif line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("id:"):
            event_id = line[3:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())


def read_stream(url: str, *, headers=None, stop_after=None, timeout: float = 60) -> list[Event]:
    """Read a stream until the server closes it (or ``stop_after(event)`` says stop)."""
    events = []
    with httpx.stream("GET", url, headers=headers or {}, timeout=timeout) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        for event in parse(response.iter_lines()):
            events.append(event)
            if stop_after and stop_after(event):
                break
    return events
