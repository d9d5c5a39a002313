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
  their bump: it neither uses nor keeps remembered bodies.
- Versions are random, not counted: a version lost with a Redis restart is made again as a
  new random number, which no remembered body has.
- A remembered body is also dropped after 30 seconds: the bound for a change made
  behind this module's back (a queryset ``update()`` in a shell) or a bump the cache missed.
- Without the shared Redis cache (the embedded mode's local memory, where management commands
  run in other processes), when it is down, or with ``STATUS_CACHE=false``, every read goes
  to the database, as before.

In the test suite every answer from memory is checked against a fresh read (``VERIFY``), so
a write path that forgets its bump fails the test that takes it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache import caches
from django.db import transaction

from apps.core.memory import ProcessMemory, new_version

logger = logging.getLogger("image2model.jobs")

VERSION_TIMEOUT_SECONDS = 24 * 3600  # a batch nobody reads or changes for a day is forgotten
VERIFY = False  # the test suite turns it on: every remembered body is compared with a fresh read


@dataclass(frozen=True)
class Remembered:
    owner_id: Any
    version: int
    body: dict[str, Any]  # never changed once kept


# By batch id; a kept body is read again after 30 s even when its version did not change.
remembered = ProcessMemory(max_entries=4096, max_age=30.0)


def _cache():
    return caches["default"]


def shared() -> bool:
    """Versions live only in the shared Redis cache, which every process (web, workers,
    commands) sees; writers keep them there whatever ``STATUS_CACHE`` says."""
    return hasattr(_cache(), "client")


def _key(batch_id) -> str:
    return _cache().make_key(f"jobs:batch-status:{batch_id}")


def body(batch_id, owner_id, read: Callable[[], dict[str, Any] | None]) -> dict[str, Any] | None:
    """The batch's status body for this owner: the one kept under the current version, or
    ``read()`` (None: not the owner's batch, never kept), kept for the next reads."""
    usable = settings.STATUS_CACHE and shared()
    # A read in a transaction may see its own writes before their bump (they bump on commit).
    version = _version_current(batch_id) if usable and not _in_transaction() else None
    entry = remembered.get(batch_id) if version is not None else None
    if entry is not None and entry.version == version and entry.owner_id == owner_id:
        if not VERIFY:
            return entry.body
        fresh = read()
        if fresh != entry.body:
            raise AssertionError(f"batch {batch_id}: kept status {entry.body} != read {fresh}")
        return fresh
    fresh = read()
    if fresh is not None and version is not None:
        remembered.put(batch_id, Remembered(owner_id, version, fresh))
    return fresh


def _in_transaction() -> bool:
    return transaction.get_connection().in_atomic_block


def _version_current(batch_id) -> int | None:
    """The batch's status version now (made when missing); None when it cannot be known."""
    key = _key(batch_id)
    try:
        client = _cache().client()
        version = client.get(key)
        if version is None:
            client.set(key, new_version(), ex=VERSION_TIMEOUT_SECONDS, nx=True)
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
            client.set(_key(batch_ids[0]), new_version(), ex=VERSION_TIMEOUT_SECONDS)
            return
        with client.pipeline(transaction=False) as pipe:
            for batch_id in batch_ids:
                pipe.set(_key(batch_id), new_version(), ex=VERSION_TIMEOUT_SECONDS)
            pipe.execute()
    except Exception:
        # A body kept under the old version is served for at most its max age (30 s).
        logger.error("batch status version not changed: cache unavailable", exc_info=True)


def forget_all() -> None:
    remembered.clear()
