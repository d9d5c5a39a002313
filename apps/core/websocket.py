"""WebSocket origin check: browsers must come from an allowed host; non-browser clients
(which send no Origin header and cannot be driven by another site) are let through to the
consumer's own authentication."""

from __future__ import annotations

from channels.security.websocket import OriginValidator
from django.conf import settings


class AllowedHostsOrNoOriginValidator(OriginValidator):
    def __init__(self, application):
        allowed = settings.ALLOWED_HOSTS or (
            ["localhost", "127.0.0.1", "[::1]"] if settings.DEBUG else []
        )
        super().__init__(application, allowed)

    def valid_origin(self, parsed_origin) -> bool:
        if parsed_origin is None:
            return True
        return super().valid_origin(parsed_origin)
