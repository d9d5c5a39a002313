"""Health checks of every component, each real and bounded by a short timeout."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any

import redis
from django.conf import settings
from django.db import connection

from apps.jobs import selectors as job_selectors

HEALTHY, DEGRADED, UNHEALTHY = "healthy", "degraded", "unhealthy"
CHECK_TIMEOUT_SECONDS = 3.0
_pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="health")


@dataclass
class Component:
    name: str
    status: str
    response_time_ms: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"status": self.status, "response_time_ms": self.response_time_ms, **self.details}


def _database() -> tuple[str, dict]:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
        return HEALTHY, {"engine": connection.vendor}
    finally:
        connection.close()  # this thread's own connection; do not leave it open


def _redis(url: str) -> tuple[str, dict]:
    if not url:
        return HEALTHY, {"mode": "embedded (in-process)"}
    client = redis.Redis.from_url(
        url, socket_connect_timeout=1.0, socket_timeout=1.0, retry_on_timeout=False
    )
    try:
        client.ping()
        return HEALTHY, {}
    finally:
        client.close()


def _workers() -> tuple[str, dict]:
    alive = job_selectors.workers_alive_count(within_seconds=30)
    try:
        return (HEALTHY if alive else DEGRADED), {"alive": alive}
    finally:
        connection.close()


def _disk_space() -> tuple[str, dict]:
    settings.MEDIA_ROOT.mkdir(parents=True, exist_ok=True)
    usage = shutil.disk_usage(settings.MEDIA_ROOT)
    percent = round(usage.used / usage.total * 100, 1)
    free_gb = round(usage.free / 1024**3, 2)
    status = HEALTHY
    if usage.free < 1024**3 or percent > 95:
        status = UNHEALTHY
    elif percent > 85:
        status = DEGRADED
    return status, {"free_gb": free_gb, "used_percent": percent}


def _generators() -> tuple[str, dict]:
    generators = job_selectors.generators_describe()
    available = [g["id"] for g in generators if g["available"]]
    circuits = {
        g["id"]: g["circuit_state"] for g in generators if g["available"] and g["circuit_state"]
    }
    status = HEALTHY if available else UNHEALTHY
    if status == HEALTHY and any(state == "open" for state in circuits.values()):
        status = DEGRADED
    return status, {
        "available": available,
        "unavailable": {g["id"]: g["unavailable_reason"] for g in generators if not g["available"]},
        "circuits": circuits,
    }


CHECKS: dict[str, Callable[[], tuple[str, dict]]] = {
    "database": _database,
    "redis": lambda: _redis(settings.CACHE_REDIS_URL),
    "cache": lambda: _redis(settings.CACHE_REDIS_URL),
    "broker": lambda: _redis(settings.BROKER_REDIS_URL),
    "workers": _workers,
    "disk_space": _disk_space,
    "generators": _generators,
}


def _timed(check: Callable[[], tuple[str, dict]]) -> tuple[str, dict, float]:
    started = time.perf_counter()
    try:
        status, details = check()
    except Exception as error:  # a failing dependency is a result, not a crash
        status, details = UNHEALTHY, {"error": type(error).__name__}
    return status, details, round((time.perf_counter() - started) * 1000, 1)


def components_check(names: list[str]) -> list[Component]:
    """Run the named checks at once; a check that outlasts the timeout is unhealthy."""
    futures = {name: _pool.submit(_timed, CHECKS[name]) for name in names}
    deadline = time.monotonic() + CHECK_TIMEOUT_SECONDS
    results = []
    for name, future in futures.items():
        try:
            status, details, elapsed = future.result(timeout=max(0.0, deadline - time.monotonic()))
        except FutureTimeout:
            status, details, elapsed = UNHEALTHY, {"error": "timeout"}, CHECK_TIMEOUT_SECONDS * 1000
        results.append(Component(name, status, elapsed, details))
    return results


def overall_status(components: list[Component]) -> str:
    statuses = {component.status for component in components}
    if UNHEALTHY in statuses:
        return UNHEALTHY
    return DEGRADED if DEGRADED in statuses else HEALTHY
