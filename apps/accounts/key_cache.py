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
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import caches

from apps.accounts.models import ApiKey
from apps.core.memory import ProcessMemory, new_version

logger = logging.getLogger("image2model.accounts")

VERSION_KEY = "accounts:auth-version"


@dataclass(frozen=True)
class Remembered:
    api_key: ApiKey  # with its owner; never handed out itself (see ``fresh_copy``)
    version: int


# By prefix. A remembered key is read again after 60 s even when the version did not change:
# the bound for a change made behind the signals' back (a queryset ``update()`` in a shell).
remembered = ProcessMemory(max_entries=10_000, max_age=60.0)


def auth_cache():
    """The cache holding the version: the rate limit's, so one command reads both."""
    return caches[getattr(settings, "RATELIMIT_USE_CACHE", "default")]


def usable() -> bool:
    """Whether a request can confirm a remembered key: rate limits on, on a cache whose one
    command also reads the version (the Redis cache; not the embedded mode's local memory)."""
    return settings.RATELIMIT_ENABLE and hasattr(auth_cache(), "incr_in_window_and_get")


def recall(prefix: str) -> Remembered | None:
    return remembered.get(prefix)


def remember(api_key: ApiKey, version: int) -> None:
    remembered.put(api_key.prefix, Remembered(api_key, version))


def note_last_used(api_key: ApiKey) -> None:
    """Carry a request's ``last_used_at`` over to the remembered key, so the next request of
    this process does not write it again (api_key_touch writes at most once a minute)."""
    entry = remembered.get(api_key.prefix)
    if entry is not None and entry.api_key.pk == api_key.pk:
        entry.api_key.last_used_at = api_key.last_used_at


def forget(prefix: str) -> None:
    remembered.forget(prefix)


def forget_all() -> None:
    remembered.clear()


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
            cache.add(VERSION_KEY, new_version(), timeout=None)
            version = cache.get(VERSION_KEY)
    except Exception:  # the cache is down: nothing is remembered
        logger.warning("auth version not read: cache unavailable", exc_info=True)
        return None
    return version if isinstance(version, int) else None


def version_bump() -> None:
    """A new auth version: every process reads its remembered keys again."""
    try:
        auth_cache().set(VERSION_KEY, new_version(), timeout=None)
    except Exception:
        # Remembered keys stay trusted for at most their max age (60 s), and not while the
        # cache (and with it the version read) is unavailable.
        logger.error("auth version not changed: cache unavailable", exc_info=True)
    forget_all()
