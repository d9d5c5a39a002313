"""A circuit breaker per generator, with its state in the shared cache so every worker and web
process sees the same state.

closed → (``threshold`` upstream failures in a row) → open → (``cooldown`` passes) → half-open:
one probe call is let through; its success closes the circuit, its failure opens it again.
"""

from __future__ import annotations

import logging
import time

from django.conf import settings
from django.core.cache import cache

logger = logging.getLogger("image2model.jobs")

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
_KEEP = 24 * 3600  # cache entries outlive any cooldown


class CircuitBreaker:
    def __init__(self, name: str) -> None:
        self.name = name
        self.failures_key = f"breaker:{name}:failures"
        self.opened_key = f"breaker:{name}:opened_at"
        self.probe_key = f"breaker:{name}:probe"

    @property
    def threshold(self) -> int:
        return settings.BREAKER_FAILURE_THRESHOLD

    @property
    def cooldown(self) -> float:
        return settings.BREAKER_COOLDOWN_SECONDS

    def state(self) -> str:
        try:
            opened_at = cache.get(self.opened_key)
        except Exception:  # the cache is down: do not block generation on the breaker itself
            logger.warning("circuit %s state unknown (cache unavailable)", self.name)
            return CLOSED
        if opened_at is None:
            return CLOSED
        return OPEN if time.time() - opened_at < self.cooldown else HALF_OPEN

    def allow(self) -> bool:
        """May a call go upstream now? In half-open, only the first caller gets to probe."""
        state = self.state()
        if state == CLOSED:
            return True
        if state == OPEN:
            return False
        try:
            return cache.add(self.probe_key, 1, timeout=max(1, int(self.cooldown)))
        except Exception:
            return True

    def record_success(self) -> None:
        try:
            if cache.get(self.opened_key) is not None:
                logger.info("circuit %s closed after a successful call", self.name)
            cache.delete_many([self.failures_key, self.opened_key, self.probe_key])
        except Exception:
            logger.warning("circuit %s: success not recorded (cache unavailable)", self.name)

    def record_failure(self) -> None:
        try:
            self._count_failure()
        except Exception:
            logger.warning("circuit %s: failure not recorded (cache unavailable)", self.name)

    def _count_failure(self) -> None:
        if self.state() == HALF_OPEN:
            self._open()
            return
        cache.add(self.failures_key, 0, timeout=_KEEP)
        try:
            failures = cache.incr(self.failures_key)
        except ValueError:  # expired between add and incr
            failures = 1
            cache.set(self.failures_key, 1, timeout=_KEEP)
        if failures >= self.threshold:
            self._open()

    def _open(self) -> None:
        logger.warning("circuit %s opened", self.name)
        cache.set(self.opened_key, time.time(), timeout=_KEEP)
        cache.delete_many([self.failures_key, self.probe_key])
