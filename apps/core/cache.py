"""Django's Redis cache with one client (and so one connection pool) per process."""

from __future__ import annotations

import threading

from django.core.cache.backends.redis import RedisCache, RedisCacheClient
from django.utils.functional import cached_property

_clients: dict[tuple[str, ...], RedisCacheClient] = {}
_clients_lock = threading.Lock()


class SharedPoolRedisCache(RedisCache):
    """``RedisCache`` whose instances share one client per server list and options.

    Django keeps one cache object per thread or asyncio context, and each made its own
    connection pool. Under daphne every request runs in a thread of its own, so every request
    opened (and dropped) a new Redis connection. redis-py's pool is thread-safe and resets
    itself after a fork, so one per process is enough.
    """

    @cached_property
    def _cache(self) -> RedisCacheClient:
        key = (*self._servers, repr(sorted(self._options.items())))
        with _clients_lock:
            client = _clients.get(key)
            if client is None:
                client = _clients[key] = self._class(self._servers, **self._options)
        return client
