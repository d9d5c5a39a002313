"""The request id of the current request, for responses and log lines."""

from __future__ import annotations

import logging
import re
import uuid
from contextvars import ContextVar

_current: ContextVar[str] = ContextVar("request_id", default="-")
_WELL_FORMED = re.compile(r"^[A-Za-z0-9._:-]{8,128}$")


def request_id_from_header(value: str | None) -> str:
    """The client's id when it is well formed (no spaces or control characters), else a new one."""
    if value and _WELL_FORMED.match(value):
        return value
    return uuid.uuid4().hex


def current_request_id() -> str:
    return _current.get()


def set_request_id(value: str):
    return _current.set(value)


def reset_request_id(token) -> None:
    _current.reset(token)


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` to every log record, so formatters can print it."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = current_request_id()
        return True
