"""Batch status bodies remembered in each web process while the batch does not change.

API clients poll ``GET /api/v1/status/tasks/{id}/status``, often several times a second per
batch, and each read joined the batch, its jobs, their photos and artifacts in PostgreSQL.
Now each batch has a *status version* in the shared cache: a random number that every change
to the batch, its jobs or its artifacts replaces (``version_bump``). A process remembers the
body it built under the version it read *before* reading the database, and answers from it
while that version is still the current one. See decision 0025.

Why this is safe:

- A change bumps the version after its transaction commits. A body remembered under version
  *v* was read from the database after *v* was read, so it holds every change whose bump came
  before *v*; a body read before a commit was read under the version that commit replaces.
- A read inside a transaction (a test's, or ``ATOMIC_REQUESTS``) may see its own writes before
  their bump: it neither uses nor keeps remembered bodies (``in_transaction``).
- Versions are random, not counted: a version lost with a Redis restart is made again as a
  new random number, which no remembered body has.
- A remembered body is also dropped after ``MAX_AGE_SECONDS``: the bound for a change made
  behind this module's back (a queryset ``update()`` in a shell) or a bump the cache missed.
- Without the shared Redis cache (the embedded mode's local memory, where management commands
  run in other processes), when it is down, or with ``STATUS_CACHE=false``, every read goes
  to the database, as before.

In the test suite every answer from memory is checked against a fresh read (``VERIFY``), so
a write path that forgets its bump fails the test that takes it.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache import caches
from django.db import transaction

logger = logging.getLogger("image2model.jobs")

MAX_AGE_SECONDS = 30.0
MAX_ENTRIES = 4096
VERSION_TIMEOUT_SECONDS = 24 * 3600  # a batch nobody reads or changes for a day is forgotten
VERIFY = False  # the test suite turns it on: every remembered body is compared with a fresh read


@dataclass(frozen=True)
class Remembered:
    owner_id: Any
    version: int
    body: dict[str, Any]
    stored_at: float


_remembered: dict[Any, Remembered] = {}
_lock = threading.Lock()


def _cache():
    return caches["default"]


def shared() -> bool:
    """Versions live only in the shared Redis cache, which every process (web, workers,
    commands) sees; writers keep them there whatever ``STATUS_CACHE`` says."""
    return hasattr(_cache(), "incr_in_window_and_get")


def usable() -> bool:
    """Whether reads may be answered from memory (``STATUS_CACHE``, on the shared cache)."""
    return settings.STATUS_CACHE and shared()


def _key(batch_id) -> str:
    return _cache().make_key(f"jobs:batch-status:{batch_id}")


def version_current(batch_id) -> int | None:
    """The batch's status version now (made when missing); None when it cannot be known."""
    if not usable():
        return None
    key = _key(batch_id)
    try:
        client = _cache().client()
        version = client.get(key)
        if version is None:
            client.set(key, _new_version(), ex=VERSION_TIMEOUT_SECONDS, nx=True)
            version = client.get(key)
        return int(version) if version is not None else None
    except Exception:  # the cache is down (or the value is not a number): nothing is remembered
        logger.warning("batch status version not read: cache unavailable", exc_info=True)
        return None


def version_bump(*batch_ids) -> None:
    """New status versions for these batches, once the current transaction commits (now when
    there is none): a body read before the commit is then never served again."""
    batch_ids = tuple(dict.fromkeys(batch_id for batch_id in batch_ids if batch_id is not None))
    if not batch_ids or not shared():
        return
    transaction.on_commit(lambda: _versions_replace(batch_ids))  # at once outside a transaction


def _versions_replace(batch_ids: tuple) -> None:
    try:
        client = _cache().client()
        if len(batch_ids) == 1:
            client.set(_key(batch_ids[0]), _new_version(), ex=VERSION_TIMEOUT_SECONDS)
            return
        with client.pipeline(transaction=False) as pipe:
            for batch_id in batch_ids:
                pipe.set(_key(batch_id), _new_version(), ex=VERSION_TIMEOUT_SECONDS)
            pipe.execute()
    except Exception:
        # A body remembered under the old version is served for at most MAX_AGE_SECONDS.
        logger.error("batch status version not changed: cache unavailable", exc_info=True)


def in_transaction() -> bool:
    return transaction.get_connection().in_atomic_block


def recall(batch_id, owner_id, version: int | None) -> dict[str, Any] | None:
    """The body remembered for this batch and owner under ``version``, if any."""
    if version is None:
        return None
    entry = _remembered.get(batch_id)
    if entry is None or entry.version != version or entry.owner_id != owner_id:
        return None
    if time.monotonic() - entry.stored_at > MAX_AGE_SECONDS:
        with _lock:
            _remembered.pop(batch_id, None)
        return None
    return entry.body


def remember(batch_id, owner_id, version: int | None, body: dict[str, Any]) -> None:
    """Keep ``body`` (read after ``version`` was) for the next reads; never changed again."""
    if version is None:
        return
    with _lock:
        if len(_remembered) >= MAX_ENTRIES and batch_id not in _remembered:
            _remembered.clear()
        _remembered[batch_id] = Remembered(owner_id, version, body, time.monotonic())


def forget_all() -> None:
    with _lock:
        _remembered.clear()


def _new_version() -> int:
    return secrets.randbits(62) + 1  # stored as digits, as Django's Redis cache stores an int
