"""Exceptions of the client, mapped from the server's problem details (RFC 9457).

Every error the v2 API answers is ``application/problem+json``::

    {"type": "...", "title": "Job not finished", "status": 409, "detail": "...",
     "instance": "/api/v2/jobs/...", "code": "JOB_NOT_FINISHED", "request_id": "..."}

:func:`error_from_response` turns such an answer into the matching :class:`ApiError` subclass.
Answers that are not problem details (a proxy's HTML page, v1's envelope) are mapped too, from
their status and whatever they carry.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx


class Image2ModelError(Exception):
    """Base class of every error this package raises."""


class ConfigurationError(Image2ModelError):
    """The client was set up wrong: no server URL, a malformed URL, no API key."""


class TransportError(Image2ModelError):
    """The server could not be reached, or the connection failed, after every retry."""

    def __init__(self, message: str, *, cause: BaseException | None = None) -> None:
        super().__init__(message)
        self.cause = cause


class ChecksumMismatch(Image2ModelError):
    """A downloaded file's size or SHA-256 differs from the artifact's; the file was deleted."""

    def __init__(self, path: str, *, expected: str, actual: str, what: str = "sha256") -> None:
        super().__init__(f"{what} mismatch for {path}: expected {expected}, got {actual}")
        self.path, self.expected, self.actual, self.what = path, expected, actual, what


@dataclass(frozen=True)
class FieldError:
    """One entry of a validation error's ``errors``."""

    field: str
    message: str
    type: str = ""


class ApiError(Image2ModelError):
    """The server answered with an error status.

    ``status`` is the HTTP status, ``code`` the stable machine-readable code
    (``JOB_NOT_FINISHED``, ``RATE_LIMIT_EXCEEDED``, ...), ``title`` and ``detail`` the human text,
    ``request_id`` the id to quote when reporting a problem, ``problem`` the whole body.
    """

    def __init__(
        self,
        status: int,
        *,
        code: str = "",
        title: str = "",
        detail: str = "",
        request_id: str | None = None,
        instance: str | None = None,
        type: str | None = None,  # the RFC 9457 member
        problem: dict[str, Any] | None = None,
        headers: httpx.Headers | None = None,
    ) -> None:
        self.status = status
        self.code = code or f"HTTP_{status}"
        self.title = title
        self.detail = detail or title or f"HTTP {status}"
        self.request_id = request_id
        self.instance = instance
        self.type = type
        self.problem = problem or {}
        self.headers = headers or httpx.Headers()
        super().__init__(self.describe())

    def describe(self) -> str:
        """``<detail> (code CODE, request id ...)``, as the CLI prints it."""
        extra = f"code {self.code}"
        if self.request_id:
            extra += f", request id {self.request_id}"
        return f"{self.detail} ({extra})"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status}, code={self.code!r})"


class BadRequest(ApiError):
    """400: a file, parameter or cursor was refused."""


class Unauthorized(ApiError):
    """401: no key, or a wrong, revoked or expired key."""


class Forbidden(ApiError):
    """403: the key lacks the scope."""


class NotFound(ApiError):
    """404: no such object, or someone else's."""


class Conflict(ApiError):
    """409: the object's state forbids the operation, or an Idempotency-Key clash."""


class Gone(ApiError):
    """410: a signed link expired."""


class PayloadTooLarge(ApiError):
    """413: a file over the size limit."""


class ValidationError(ApiError):
    """422: wrong types or missing fields; ``errors`` has one entry per field."""

    def __init__(self, status: int, *, errors: list[FieldError] | None = None, **kw: Any) -> None:
        self.errors = errors or []
        super().__init__(status, **kw)

    def describe(self) -> str:
        base = super().describe()
        if not self.errors:
            return base
        fields = "; ".join(f"{e.field}: {e.message}" for e in self.errors)
        return f"{base}: {fields}"


class RateLimited(ApiError):
    """429: over the key's limit. ``retry_after`` is the server's ``Retry-After`` in seconds."""

    @property
    def retry_after(self) -> float | None:
        from image2model_client._http import parse_retry_after

        return parse_retry_after(self.headers.get("retry-after"))


class ServerError(ApiError):
    """5xx: the server failed or is unavailable."""


class ServiceUnavailable(ServerError):
    """503: the generator is unavailable (circuit open, no FAL key) or the server is busy."""


_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    410: Gone,
    413: PayloadTooLarge,
    422: ValidationError,
    429: RateLimited,
    503: ServiceUnavailable,
}


def _body(response: httpx.Response) -> dict[str, Any]:
    try:
        body = json.loads(response.content or b"null")
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def error_from_response(response: httpx.Response) -> ApiError:
    """The exception for an error answer (status >= 400)."""
    status = response.status_code
    body = _body(response)
    request_id = body.get("request_id") or response.headers.get("x-request-id")
    if "error_code" in body and "status_code" in body:  # v1's envelope
        details = body.get("details") or {}
        code = body.get("error_code", "")
        title = detail = body.get("message", "")
        raw_errors = details.get("validation_errors") or []
        request_id = details.get("request_id") or request_id
    else:
        code = body.get("code", "")
        title = body.get("title", "")
        detail = body.get("detail") or title
        raw_errors = body.get("errors") or []
    if not detail:
        text = response.text.strip() if response.content else ""
        detail = (
            text[:200]
            if text and not text.startswith("<")
            else (response.reason_phrase or f"HTTP {status}")
        )
    cls = _BY_STATUS.get(status) or (ServerError if status >= 500 else ApiError)
    kwargs: dict[str, Any] = {
        "code": code,
        "title": title,
        "detail": detail,
        "request_id": request_id,
        "instance": body.get("instance"),
        "type": body.get("type"),
        "problem": body,
        "headers": response.headers,
    }
    if cls is ValidationError:
        kwargs["errors"] = [
            FieldError(
                field=str(e.get("field", "")),
                message=str(e.get("message", "")),
                type=str(e.get("type", "")),
            )
            for e in raw_errors
            if isinstance(e, dict)
        ]
    return cls(status, **kwargs)
