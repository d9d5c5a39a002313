from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.template import loader


def health(request: HttpRequest) -> JsonResponse:
    """The old service's plain probe (used by Docker health checks)."""
    return JsonResponse({"status": "healthy", "service": settings.SERVICE_NAME})


def server_error(request: HttpRequest) -> HttpResponse:
    """500 page: a request id to quote, nothing about the internals.

    Rendered without the request's context processors: the fault may be the database, and
    asking for the signed-in user would raise it again.
    """
    html = loader.get_template("500.html").render(
        {"request_id": getattr(request, "request_id", "")}
    )
    return HttpResponse(html, status=500)


def home(request: HttpRequest):
    return render(request, "console/home.html", {"max_files": settings.UPLOAD_MAX_FILES})
