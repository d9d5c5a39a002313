"""Django's Redis cache with one client (and so one connection pool) per process."""

from __future__ import annotations

import threading
from typing import Any

from django.core.cache.backends.redis import RedisCache, RedisCacheClient
from django.utils.functional import cached_property

_clients: dict[tuple[str, ...], RedisCacheClient] = {}
_clients_lock = threading.Lock()
_scripts: dict[int, Any] = {}  # the registered Lua script, per shared client (one per process)
_kept_clients: dict[int, Any] = {}  # a redis-py client per shared client (one per process)
# INCR, a TTL for a counter the INCR created (so a counter never outlives its window), and the
# value of a second key, read in the same round trip.
_INCR_IN_WINDOW_AND_GET = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return {count, redis.call('GET', KEYS[2])}
"""


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

    def client(self):
        """A redis-py client on the shared pool, kept per process: ``get_client`` makes a new
        one on every call, which costs as much as a short command (see status_cache)."""
        client = _kept_clients.get(id(self._cache))
        if client is None:
            client = _kept_clients[id(self._cache)] = self._cache.get_client(write=True)
        return client

    def incr_in_window_and_get(self, key: str, timeout: int, other: str) -> tuple[int, int | None]:
        """Add 1 to the counter ``key`` and return its new value, with the integer stored at
        ``other`` (None when missing or not an integer). A counter created by this call lives
        ``timeout`` seconds. One command (a Lua script, atomic in Redis).

        The counter is what django-ratelimit keeps with ``add`` then ``incr`` (three commands:
        SET NX, EXISTS, INCRBY): the same value under the same key.
        """
        script = _scripts.get(id(self._cache))
        if script is None:
            # The script keeps its redis-py client (thread-safe, on the shared pool): making
            # one per call, as RedisCacheClient.get_client does, costs more than the command.
            client = self._cache.get_client(write=True)
            script = _scripts[id(self._cache)] = client.register_script(_INCR_IN_WINDOW_AND_GET)
        count, value = script(keys=[self.make_key(key), self.make_key(other)], args=[timeout])
        try:
            number = int(value) if value is not None else None  # Django stores ints as digits
        except ValueError:
            number = None
        return int(count), number
