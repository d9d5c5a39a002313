"""What a process remembers while a version in the shared cache says it is still current.

Used by the remembered API keys (apps.accounts.key_cache, decision 0020) and the remembered
batch statuses (apps.jobs.status_cache, decision 0025): both keep entries in process memory,
bounded in number and in age, and check a random version in Redis before trusting one.
"""

from __future__ import annotations

import secrets
import threading
import time
from typing import Any


def new_version() -> int:
    """A random version: one lost with a Redis restart is never made again by chance. An int,
    which Django's Redis cache stores as plain digits."""
    return secrets.randbits(62) + 1


class ProcessMemory:
    """A dict of at most ``max_entries`` entries (all dropped when full), each forgotten
    ``max_age`` seconds after it was put: the bound for a change its version missed."""

    def __init__(self, *, max_entries: int, max_age: float) -> None:
        self.max_entries = max_entries
        self.max_age = max_age
        self._entries: dict[Any, tuple[Any, float]] = {}
        self._lock = threading.Lock()

    def get(self, key) -> Any:
        found = self._entries.get(key)
        if found is None:
            return None
        value, stored_at = found
        if time.monotonic() - stored_at > self.max_age:
            self.forget(key)
            return None
        return value

    def put(self, key, value) -> None:
        with self._lock:
            if len(self._entries) >= self.max_entries and key not in self._entries:
                self._entries.clear()
            self._entries[key] = (value, time.monotonic())

    def forget(self, key) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
