"""v1 health endpoints, in the old service's paths and shapes (no authentication)."""

from __future__ import annotations

import time

from django.conf import settings
from django.http import HttpRequest
from django.utils import timezone
from ninja import Router, Status

from apps.console.health import HEALTHY, UNHEALTHY, components_check, overall_status

router = Router(tags=["health"])
_STARTED = time.monotonic()


def _now() -> str:
    return timezone.now().isoformat()


@router.get("/", summary="Service identity and version")
def health(request: HttpRequest):
    return {
        "status": "healthy",
        "service": settings.SERVICE_NAME,
        "version": settings.SERVICE_VERSION,
        "timestamp": _now(),
    }


@router.get("/liveness", summary="The process is up (checks nothing else)")
def liveness(request: HttpRequest):
    return {"status": "alive", "timestamp": _now()}


@router.get(
    "/readiness",
    response={200: dict, 503: dict},
    summary="Ready to serve: database, cache and broker answer",
)
def readiness(request: HttpRequest):
    components = components_check(["database", "cache", "broker"])
    ready = all(component.status == HEALTHY for component in components)
    body = {
        "status": "ready" if ready else "not_ready",
        "timestamp": _now(),
        "components": [{"name": c.name, "status": c.status} for c in components],
    }
    return Status(200 if ready else 503, body)


@router.get(
    "/detailed",
    response={200: dict, 503: dict},
    summary="Every component with its status and response time",
)
def detailed(request: HttpRequest):
    components = components_check(["database", "redis", "workers", "disk_space", "generators"])
    status = overall_status(components)
    body = {
        "status": status,
        "service": settings.SERVICE_NAME,
        "version": settings.SERVICE_VERSION,
        "mode": "services" if settings.SERVICES_MODE else "embedded",
        "timestamp": _now(),
        "uptime_seconds": round(time.monotonic() - _STARTED, 1),
        "components": {component.name: component.as_dict() for component in components},
    }
    return Status(503 if status == UNHEALTHY else 200, body)
