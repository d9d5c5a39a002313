"""Error handlers for a NinjaAPI that render every error as the v1 envelope."""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation, TooManyFilesSent
from django.http import Http404, HttpRequest
from django.http.multipartparser import MultiPartParserError
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError

from apps.core.errors import ServiceError, error_envelope

logger = logging.getLogger("image2model.core")


def install_v1_error_handlers(api: NinjaAPI) -> None:
    """Make ``api`` answer every error in the old service's envelope."""

    def reply(
        request: HttpRequest, status: int, message: str, code=None, details=None, headers=None
    ):
        response = api.create_response(
            request,
            error_envelope(status_code=status, message=message, error_code=code, details=details),
            status=status,
        )
        for name, value in (headers or {}).items():
            response[name] = value
        return response

    @api.exception_handler(ServiceError)
    def service_error(request, exc: ServiceError):
        return reply(request, exc.status_code, exc.message, exc.code, exc.details, exc.headers)

    @api.exception_handler(ValidationError)
    def validation_error(request, exc: ValidationError):
        errors = [
            {
                "field": " -> ".join(str(part) for part in error.get("loc", ())),
                "message": error.get("msg", "invalid"),
                "type": error.get("type", "value_error"),
            }
            for error in exc.errors
        ]
        return reply(
            request,
            422,
            "Request validation failed",
            "VALIDATION_ERROR",
            {"validation_errors": errors},
        )

    @api.exception_handler(AuthenticationError)
    def authentication_error(request, exc):
        return reply(request, 403, "Not authenticated")

    @api.exception_handler(HttpError)
    def http_error(request, exc: HttpError):
        return reply(request, exc.status_code, str(exc))

    @api.exception_handler(Http404)
    def not_found(request, exc):
        return reply(request, 404, "Not Found")

    @api.exception_handler(SuspiciousOperation)
    def request_refused(request, exc: SuspiciousOperation):
        # Django's own request limits, raised while it parses the body.
        if isinstance(exc, TooManyFilesSent):
            return reply(
                request, 400, f"Too many files. Maximum allowed: {settings.UPLOAD_MAX_FILES}"
            )
        if isinstance(exc, RequestDataTooBig):
            return reply(request, 413, "Request body is too large")
        return reply(request, 400, "Bad request")

    @api.exception_handler(MultiPartParserError)
    def malformed_body(request, exc):
        return reply(request, 400, f"The multipart body could not be read: {exc}")

    @api.exception_handler(Exception)
    def unexpected(request, exc):
        logger.exception("unhandled error on %s %s", request.method, request.path)
        return reply(
            request,
            500,
            "An unexpected error occurred. Please try again later.",
            "INTERNAL_SERVER_ERROR",
            {
                "request_path": request.path,
                "request_method": request.method,
                "request_id": getattr(request, "request_id", ""),
            },
        )
