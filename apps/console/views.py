from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.shortcuts import render


def health(request: HttpRequest) -> JsonResponse:
    """The old service's plain probe (used by Docker health checks)."""
    return JsonResponse({"status": "healthy", "service": settings.SERVICE_NAME})


def server_error(request: HttpRequest):
    """500 page: a request id to quote, nothing about the internals."""
    return render(
        request, "500.html", {"request_id": getattr(request, "request_id", "")}, status=500
    )


def home(request: HttpRequest):
    return render(request, "console/home.html")
