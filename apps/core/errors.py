"""Errors every app can raise, and the v1 error envelope they become.

The envelope is the old service's: ``{"error": true, "error_code", "message", "status_code",
"details"}``. Services raise :class:`ServiceError` subclasses; the API layer renders them.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any


class ServiceError(Exception):
    """A failure a caller can act on, with the HTTP status it maps to."""

    status_code = 400
    error_code = ""
    # The stable code of API v2's problem details, where it differs from v1's ``error_code``
    # (v1 keeps the old service's HTTP_<status> codes).
    problem_code = ""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        error_code: str | None = None,
        problem_code: str | None = None,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}
        if status_code is not None:
            self.status_code = status_code
        if error_code is not None:
            self.error_code = error_code
        if problem_code is not None:
            self.problem_code = problem_code
        self.details = details or {}

    @property
    def code(self) -> str:
        return self.error_code or f"HTTP_{self.status_code}"


class NotFound(ServiceError):
    """The object does not exist or belongs to someone else (never 403: do not confirm it)."""

    status_code = 404


class InvalidInput(ServiceError):
    status_code = 400


class PayloadTooLarge(ServiceError):
    status_code = 413


class NotAuthenticated(ServiceError):
    """No valid credentials. v1 answers 403 (the old service did); v2 answers 401."""

    status_code = 403


class Forbidden(NotAuthenticated):
    """Valid credentials that may not do this (a missing scope, a failed CSRF check): 403."""


def error_envelope(
    *, status_code: int, message: str, error_code: str | None = None, details: dict | None = None
) -> dict[str, Any]:
    """The v1 error body."""
    return {
        "error": True,
        "error_code": error_code or f"HTTP_{status_code}",
        "message": message,
        "status_code": status_code,
        "details": details or {},
    }


def status_phrase(status_code: int) -> str:
    try:
        return HTTPStatus(status_code).phrase
    except ValueError:
        return "Error"
