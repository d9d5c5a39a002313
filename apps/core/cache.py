"""Django's Redis cache with one client (and so one connection pool) per process."""

from __future__ import annotations

import threading
from typing import Any

from django.core.cache.backends.redis import RedisCache, RedisCacheClient
from django.utils.functional import cached_property

_clients: dict[tuple[str, ...], RedisCacheClient] = {}
_clients_lock = threading.Lock()
_scripts: dict[int, Any] = {}  # the registered Lua script, per shared client (one per process)
# INCR, and a TTL for a counter the INCR created (so a counter never outlives its window).
_INCR_IN_WINDOW = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return count
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

    def incr_in_window(self, key: str, timeout: int) -> int:
        """Add 1 to the counter ``key`` and return its new value; a counter created by this
        call lives ``timeout`` seconds. One command (a Lua script, atomic in Redis).

        What django-ratelimit does with ``add`` then ``incr`` (three commands: SET NX, EXISTS,
        INCRBY); the counter holds the same value under the same key.
        """
        script = _scripts.get(id(self._cache))
        if script is None:
            # The script keeps its redis-py client (thread-safe, on the shared pool): making
            # one per call, as RedisCacheClient.get_client does, costs more than the command.
            client = self._cache.get_client(write=True)
            script = _scripts[id(self._cache)] = client.register_script(_INCR_IN_WINDOW)
        return int(script(keys=[self.make_key(key)], args=[timeout]))
