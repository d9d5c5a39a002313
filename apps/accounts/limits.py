"""Per-key rate limits on the shared cache (django-ratelimit), so a limit holds across any number
of web processes. Keys are limited by key, signed-in users by user, anonymous calls by IP."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from django.conf import settings
from django.http import HttpRequest
from django_ratelimit.core import (
    EXPIRATION_FUDGE,
    _get_window,
    _make_cache_key,
    _split_rate,
    get_usage,
)

from apps.accounts import key_cache
from apps.core.errors import ServiceError

logger = logging.getLogger("image2model.accounts")


@dataclass(frozen=True)
class Usage:
    limit: int
    remaining: int
    reset: int  # seconds until the window starts again

    def headers(self) -> dict[str, str]:
        return {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset),
        }


class RateLimited(ServiceError):
    status_code = 429
    error_code = "RATE_LIMIT_EXCEEDED"


def _rate(group: str, request: HttpRequest) -> str:
    """A key's own limit (if set) for uploads; the configured defaults otherwise."""
    if getattr(request, "owner", None) is None:
        return settings.RATE_LIMIT_ANONYMOUS
    api_key = getattr(request, "api_key", None)
    if group == "upload":
        if api_key is not None and api_key.rate_limit_per_minute:
            return f"{api_key.rate_limit_per_minute}/m"
        return settings.RATE_LIMIT_UPLOADS
    return settings.RATE_LIMIT_READS


def _identity(group: str, request: HttpRequest) -> str:
    api_key = getattr(request, "api_key", None)
    if api_key is not None:
        return f"key:{api_key.pk}"
    owner = getattr(request, "owner", None)
    if owner is not None:
        return f"user:{owner.pk}"
    return f"ip:{client_ip(request)}"


def client_ip(request: HttpRequest) -> str:
    """REMOTE_ADDR, or the header RATELIMIT_IP_META_KEY names (set by a proxy you run)."""
    header = settings.RATELIMIT_IP_META_KEY
    if header and request.META.get(header):
        return request.META[header].split(",")[0].strip()
    return request.META.get("REMOTE_ADDR", "")


def _usage(request: HttpRequest, group: str, rate: str) -> dict | None:
    """django-ratelimit's ``get_usage(…, increment=True)``: same key, window and counter.

    On the Redis cache the counter is created and incremented in one round trip instead of
    django-ratelimit's three (every API request pays for it), and the same command reads the
    auth version (``usage["auth_version"]``, see key_cache); other caches use get_usage.
    """
    cache = key_cache.auth_cache()
    if not hasattr(cache, "incr_in_window_and_get"):
        return get_usage(request, group=group, key=_identity, rate=rate, increment=True)
    limit, period = _split_rate(rate)
    value = _identity(group, request)
    window = _get_window(value, period)
    key = _make_cache_key(group, window, rate, value, get_usage.ALL)
    count, version = cache.incr_in_window_and_get(
        key, period + EXPIRATION_FUDGE, key_cache.VERSION_KEY
    )
    return {
        "count": count,
        "limit": limit,
        "should_limit": count > limit,
        "time_left": window - int(time.time()),
        "auth_version": version,
    }


def rate_limit(request: HttpRequest, group: str) -> Usage | None:
    """Count this request in its group; raise RateLimited (429) past the limit.

    The usage is kept on the request so the response carries the RateLimit headers too, and
    the auth version read with it as ``request.auth_version`` (left as it was when not read).
    """
    if not settings.RATELIMIT_ENABLE:
        return None
    rate = _rate(group, request)
    try:
        usage = _usage(request, f"api-{group}", rate)
    except Exception:  # the cache is down: serve rather than refuse everyone
        logger.warning("rate limit not checked: cache unavailable", exc_info=True)
        return None
    if usage is None:
        return None
    request.auth_version = usage.get("auth_version")
    info = Usage(
        limit=usage["limit"],
        remaining=max(0, usage["limit"] - usage["count"]),
        reset=max(0, usage["time_left"]),
    )
    request.rate_limit_usage = info
    if usage["should_limit"]:
        raise RateLimited(
            "Rate limit exceeded",
            details={"limit": info.limit, "retry_after": info.reset},
            headers={**info.headers(), "Retry-After": str(max(1, info.reset))},
        )
    return info
