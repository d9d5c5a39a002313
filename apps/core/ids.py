"""Parsing ids from URLs with the old service's messages."""

from __future__ import annotations

import uuid

from apps.core.errors import InvalidInput


def parse_uuid(
    value: str, *, message: str = "Invalid ID format. Expected UUID format."
) -> uuid.UUID:
    """A UUID from a path segment, or InvalidInput (400) with ``message``."""
    try:
        return uuid.UUID(value.strip())
    except (ValueError, AttributeError):
        raise InvalidInput(message) from None
