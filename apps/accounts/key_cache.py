"""Verified API keys remembered in each process while nothing about keys or users changes.

Every API request with a key read the key and its owner from PostgreSQL. A process now
remembers a verified key (by prefix) with the *auth version* it was read under: a random number
in the shared cache that every change to an API key or a user replaces (``version_bump``, from
the signals in ``apps.accounts.signals``). The rate limit's Redis command reads the version in
the same round trip as it counts the request, and a remembered key counts only when its version
is still the current one; otherwise it is read again. Without a version (the cache is down,
rate limits are off, the embedded mode's local cache) every request reads the database, as
before. See decision 0020.
"""

from __future__ import annotations

import copy
import logging
import secrets
import threading
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import caches

from apps.accounts.models import ApiKey

logger = logging.getLogger("image2model.accounts")

VERSION_KEY = "accounts:auth-version"
# A remembered key is read again after this long even when the version did not change: the
# bound for a change made behind the signals' back (a queryset ``update()`` in a shell).
MAX_AGE_SECONDS = 60.0
MAX_ENTRIES = 10_000


@dataclass(frozen=True)
class Remembered:
    api_key: ApiKey  # with its owner; never handed out itself (see ``fresh_copy``)
    version: int
    stored_at: float


_remembered: dict[str, Remembered] = {}
_lock = threading.Lock()


def auth_cache():
    """The cache holding the version: the rate limit's, so one command reads both."""
    return caches[getattr(settings, "RATELIMIT_USE_CACHE", "default")]


def usable() -> bool:
    """Whether a request can confirm a remembered key: rate limits on, on a cache whose one
    command also reads the version (the Redis cache; not the embedded mode's local memory)."""
    return settings.RATELIMIT_ENABLE and hasattr(auth_cache(), "incr_in_window_and_get")


def recall(prefix: str) -> Remembered | None:
    entry = _remembered.get(prefix)
    if entry is not None and time.monotonic() - entry.stored_at > MAX_AGE_SECONDS:
        forget(prefix)
        return None
    return entry


def remember(api_key: ApiKey, version: int) -> None:
    with _lock:
        if len(_remembered) >= MAX_ENTRIES and api_key.prefix not in _remembered:
            _remembered.clear()
        _remembered[api_key.prefix] = Remembered(api_key, version, time.monotonic())


def note_last_used(api_key: ApiKey) -> None:
    """Carry a request's ``last_used_at`` over to the remembered key, so the next request of
    this process does not write it again (api_key_touch writes at most once a minute)."""
    entry = _remembered.get(api_key.prefix)
    if entry is not None and entry.api_key.pk == api_key.pk:
        entry.api_key.last_used_at = api_key.last_used_at


def forget(prefix: str) -> None:
    with _lock:
        _remembered.pop(prefix, None)


def forget_all() -> None:
    with _lock:
        _remembered.clear()


def fresh_copy(api_key: ApiKey) -> ApiKey:
    """A copy for one request (with a copy of its owner), so no request changes another's."""
    key = copy.copy(api_key)
    key.scopes = list(api_key.scopes)
    key.owner = copy.copy(api_key.owner)
    return key


def version_current() -> int | None:
    """The auth version now (made when missing); None when the cache cannot say."""
    cache = auth_cache()
    try:
        version = cache.get(VERSION_KEY)
        if version is None:
            cache.add(VERSION_KEY, _new_version(), timeout=None)
            version = cache.get(VERSION_KEY)
    except Exception:  # the cache is down: nothing is remembered
        logger.warning("auth version not read: cache unavailable", exc_info=True)
        return None
    return version if isinstance(version, int) else None


def version_bump() -> None:
    """A new auth version: every process reads its remembered keys again."""
    try:
        auth_cache().set(VERSION_KEY, _new_version(), timeout=None)
    except Exception:
        # Remembered keys stay trusted for at most MAX_AGE_SECONDS, and not at all while the
        # cache (and with it the version read) is unavailable.
        logger.error("auth version not changed: cache unavailable", exc_info=True)
    forget_all()


def _new_version() -> int:
    return secrets.randbits(62) + 1  # an int: Django's Redis cache stores it as plain digits
