"""Request ids, v1 trailing-slash redirects and the v1 error envelope for every error."""

from __future__ import annotations

import json
import logging
import time

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.urls import Resolver404, resolve

from apps.core.errors import error_envelope, status_phrase
from apps.core.problems import problem_from_response
from apps.core.request_id import request_id_from_header, reset_request_id, set_request_id

API_PREFIX = "/api/"
# v1 is frozen; its responses point new clients at v2.
V1_SUCCESSOR_LINK = '</api/v2/docs>; rel="successor-version"'


request_logger = logging.getLogger("image2model.requests")


class RequestIdMiddleware:
    """Accepts a well-formed ``X-Request-ID`` or makes one; echoes it on the response; logs one
    line per request with its route (the URL pattern, never the raw path), status and time."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request_id = request_id_from_header(request.headers.get("X-Request-ID"))
        request.request_id = request_id
        token = set_request_id(request_id)
        started = time.perf_counter()
        try:
            response = self.get_response(request)
            _log_request(request, response.status_code, started)
        finally:
            reset_request_id(token)
        response["X-Request-ID"] = request_id
        # A rate-limited endpoint tells the client where it stands, on success too.
        usage = getattr(request, "rate_limit_usage", None)
        if usage is not None:
            for name, value in usage.headers().items():
                response.setdefault(name, value)
        return response


class TemporaryRedirectPreservingMethod(HttpResponseRedirect):
    status_code = 307


class ApiTrailingSlashMiddleware:
    """``POST /api/v1/upload`` → 307 to ``/api/v1/upload/``, as the old service did.

    Django's APPEND_SLASH answers 301, which turns a POST into a GET; 307 keeps the method and
    the body, so old clients that call the slash-less form keep working.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        path = request.path_info
        slashless = path.startswith(API_PREFIX) and not path.endswith("/")
        if slashless and not _resolves(path) and _resolves(path + "/"):
            query = request.META.get("QUERY_STRING", "")
            target = request.path + "/" + (f"?{query}" if query else "")
            return TemporaryRedirectPreservingMethod(target)
        return self.get_response(request)


def _log_request(request: HttpRequest, status: int, started: float) -> None:
    match = getattr(request, "resolver_match", None)
    route = (match.route or match.view_name) if match else "unmatched"
    owner = getattr(request, "owner", None) or getattr(request, "user", None)
    api_key = getattr(request, "api_key", None)
    user_id = (
        f"key:{api_key.prefix}"
        if api_key
        else (
            f"user:{owner.pk}"
            if owner is not None and getattr(owner, "is_authenticated", False)
            else ""
        )
    )
    request_logger.log(
        logging.ERROR if status >= 500 else logging.INFO,
        "%s %s %s",
        request.method,
        route,
        status,
        extra={
            "route": route,
            "method": request.method,
            "status": status,
            "user_id": user_id,
            "duration_ms": round((time.perf_counter() - started) * 1000, 2),
        },
    )


def _resolves(path: str) -> bool:
    try:
        resolve(path)
    except Resolver404:
        return False
    return True


class ApiErrorEnvelopeMiddleware:
    """Every error under ``/api/v1/`` answers in the envelope, and under ``/api/v2/`` as problem
    details, including 404 and 405. Every API response says its version (``X-API-Version``);
    v1 responses also link to v2 (``Link: rel="successor-version"``).

    Endpoints render their own errors; this catches the ones Django answers before reaching an
    endpoint (unknown path, wrong method, CSRF) and replaces their HTML with the envelope.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        path = request.path_info
        if path.startswith("/api/v2/"):
            if response.status_code >= 400 and not response.get("Content-Type", "").startswith(
                "application/problem+json"
            ):
                response = problem_from_response(request, response)
            response["X-API-Version"] = "2"
            return response
        if not path.startswith("/api/v1/"):
            return response
        response["X-API-Version"] = "1"
        response["Link"] = V1_SUCCESSOR_LINK
        if response.status_code < 400:
            return response
        if response.get("Content-Type", "").startswith("application/json"):
            return response
        message = _plain_message(response)
        details = {}
        if response.status_code >= 500:
            message = "An unexpected error occurred. Please try again later."
            details = {
                "request_path": request.path,
                "request_method": request.method,
                "request_id": getattr(request, "request_id", ""),
            }
        enveloped = JsonResponse(
            error_envelope(
                status_code=response.status_code,
                message=message,
                error_code="INTERNAL_SERVER_ERROR" if response.status_code >= 500 else None,
                details=details,
            ),
            status=response.status_code,
        )
        for header in ("Allow", "Retry-After", "X-Request-ID", "X-API-Version", "Link"):
            if header in response:
                enveloped[header] = response[header]
        return enveloped


def _plain_message(response: HttpResponse) -> str:
    if response.status_code == 404:
        return "Not Found"
    if response.status_code == 405:
        return "Method Not Allowed"
    content = getattr(response, "content", b"")
    try:
        data = json.loads(content)
        if isinstance(data, dict) and isinstance(data.get("detail"), str):
            return data["detail"]
    except (ValueError, TypeError):
        pass
    return status_phrase(response.status_code)
