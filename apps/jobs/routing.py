"""Channels routes of the jobs app (wired in image2model/asgi.py).

Each route reads the session cookie (AuthMiddlewareStack), so a signed-in page can stream
without an API key.
"""

from __future__ import annotations

from channels.auth import AuthMiddlewareStack
from django.urls import re_path

from apps.jobs import consumers

ID = r"(?P<object_id>[^/]+)"


def _route(pattern: str, consumer) -> object:
    return re_path(pattern, AuthMiddlewareStack(consumer.as_asgi()))


http_routes = [
    _route(rf"^api/v1/status/tasks/{ID}/stream/?$", consumers.V1EventStreamConsumer),
    _route(rf"^api/v1/status/jobs/{ID}/stream/?$", consumers.V1JobEventStreamConsumer),
    _route(rf"^api/v2/batches/{ID}/events/?$", consumers.V2EventStreamConsumer),
    _route(rf"^api/v2/jobs/{ID}/events/?$", consumers.V2JobEventStreamConsumer),
]
websocket_routes = [
    _route(rf"^ws/batches/{ID}/?$", consumers.EventSocketConsumer),
    _route(rf"^ws/jobs/{ID}/?$", consumers.JobEventSocketConsumer),
]
