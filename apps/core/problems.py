"""RFC 9457 problem details: the error format of API v2.

Every error becomes ``application/problem+json`` with ``type``, ``title``, ``status``,
``detail``, ``instance``, a stable ``code`` and the ``request_id``; validation errors add
``errors``, one entry per field.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation, TooManyFilesSent
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.http.multipartparser import MultiPartParserError
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError

from apps.core.errors import Forbidden, NotAuthenticated, ServiceError, status_phrase

logger = logging.getLogger("image2model.core")

CONTENT_TYPE = "application/problem+json"
TYPE_BASE = "https://image2model.dev/problems/"

# Codes for statuses that carry no code of their own.
_STATUS_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "CONFLICT",
    410: "GONE",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    422: "VALIDATION_ERROR",
    429: "RATE_LIMIT_EXCEEDED",
    500: "INTERNAL_ERROR",
    503: "SERVICE_UNAVAILABLE",
}


def problem_code(status: int, code: str | None = None) -> str:
    if code and not code.startswith("HTTP_"):
        return code
    return _STATUS_CODES.get(status, f"HTTP_{status}")


def problem_body(
    *,
    status: int,
    detail: str,
    instance: str,
    request_id: str,
    code: str | None = None,
    title: str | None = None,
    errors: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    code = problem_code(status, code)
    body: dict[str, Any] = {
        "type": TYPE_BASE + code.lower().replace("_", "-"),
        "title": title or code.replace("_", " ").capitalize(),
        "status": status,
        "detail": detail,
        "instance": instance,
        "code": code,
        "request_id": request_id,
    }
    if errors is not None:
        body["errors"] = errors
    return body


def problem_response(request: HttpRequest, status: int, detail: str, **kwargs) -> JsonResponse:
    body = problem_body(
        status=status,
        detail=detail,
        instance=request.path,
        request_id=getattr(request, "request_id", ""),
        **kwargs,
    )
    return JsonResponse(body, status=status, content_type=CONTENT_TYPE)


class ProblemDetailsAPI(NinjaAPI):
    """A NinjaAPI whose OpenAPI document says what its errors are: ``application/problem+json``.

    django-ninja documents every response as ``application/json``; the error responses of this
    API are problem details, so their content type is rewritten in the generated document.
    """

    def get_openapi_schema(self, *, path_prefix=None, path_params=None):
        schema = super().get_openapi_schema(path_prefix=path_prefix, path_params=path_params)
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                for status, response in operation.get("responses", {}).items():
                    content = response.get("content", {})
                    if str(status)[:1] in "45" and "application/json" in content:
                        response["content"] = {CONTENT_TYPE: content["application/json"]}
        return schema


def install_problem_handlers(api: NinjaAPI) -> None:
    """Make ``api`` answer every error as problem details."""

    def reply(request, status, detail, *, headers=None, **kwargs) -> HttpResponse:
        response = problem_response(request, status, detail, **kwargs)
        for name, value in (headers or {}).items():
            response[name] = value
        return response

    @api.exception_handler(ServiceError)
    def service_error(request, exc: ServiceError):
        if isinstance(exc, NotAuthenticated) and not isinstance(exc, Forbidden):
            return unauthenticated(request, exc.message)
        if isinstance(exc, Forbidden):
            return reply(request, 403, exc.message, code="FORBIDDEN")
        errors = exc.details.get("validation_errors") if exc.details else None
        if errors:  # v1 names fields "params -> face_limit"; v2 says "params.face_limit"
            errors = [{**error, "field": error["field"].replace(" -> ", ".")} for error in errors]
        return reply(
            request,
            exc.status_code,
            exc.message,
            code=exc.problem_code or exc.code,
            headers=exc.headers,
            errors=errors,
        )

    @api.exception_handler(ValidationError)
    def validation_error(request, exc: ValidationError):
        errors = [
            {
                # ("body", "payload", "face_limit") → "face_limit": where the client put it
                "field": ".".join(
                    str(part)
                    for part in error.get("loc", ())
                    if part not in ("body", "query", "path", "form", "file", "header", "payload")
                )
                or "request",
                "in": str(error.get("loc", ("request",))[0]),
                "message": error.get("msg", "invalid"),
                "type": error.get("type", "value_error"),
            }
            for error in exc.errors
        ]
        return reply(request, 422, "The request has invalid fields.", errors=errors)

    def unauthenticated(request, detail: str):
        return reply(
            request,
            401,
            f"{detail}. Send a valid API key as 'Authorization: Bearer <key>', or sign in.",
            code="UNAUTHORIZED",
            headers={"WWW-Authenticate": 'Bearer realm="image2model"'},
        )

    @api.exception_handler(AuthenticationError)
    def authentication_error(request, exc):
        return unauthenticated(request, "Not authenticated")

    @api.exception_handler(HttpError)
    def http_error(request, exc: HttpError):
        return reply(request, exc.status_code, str(exc))

    @api.exception_handler(Http404)
    def not_found(request, exc):
        return reply(request, 404, "Not found.")

    @api.exception_handler(SuspiciousOperation)
    def request_refused(request, exc: SuspiciousOperation):
        if isinstance(exc, TooManyFilesSent):
            return reply(
                request,
                400,
                f"Too many files. At most {settings.UPLOAD_MAX_FILES} per batch.",
                code="TOO_MANY_FILES",
            )
        if isinstance(exc, RequestDataTooBig):
            return reply(request, 413, "The request body is too large.")
        if isinstance(exc, ServiceError):  # upload refusals raised while parsing the body
            return service_error(request, exc)
        return reply(request, 400, "Bad request.")

    @api.exception_handler(MultiPartParserError)
    def malformed_body(request, exc):
        return reply(
            request, 400, f"The multipart body could not be read: {exc}", code="MALFORMED_BODY"
        )

    @api.exception_handler(Exception)
    def unexpected(request, exc):
        logger.exception("unhandled error on %s %s", request.method, request.path)
        return reply(request, 500, "An unexpected error occurred. Please try again later.")


def problem_from_response(request: HttpRequest, response: HttpResponse) -> JsonResponse:
    """Problem details for an error Django answered before an endpoint (404, 405, CSRF, 500)."""
    status = response.status_code
    detail = status_phrase(status) + "."
    if status >= 500:
        detail = "An unexpected error occurred. Please try again later."
    problem = problem_response(request, status, detail)
    for header in ("Allow", "Retry-After", "X-Request-ID"):
        if header in response:
            problem[header] = response[header]
    return problem
