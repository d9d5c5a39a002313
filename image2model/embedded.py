"""The embedded run mode: Dramatiq workers inside the serving process.

Started once, by the process that serves (from asgi.py), never by migrate or other commands;
under runserver's autoreload only the child that serves imports the ASGI application.
"""

from __future__ import annotations

import atexit
import logging
import threading
from datetime import timedelta

import dramatiq
from django.conf import settings
from django.utils.module_loading import autodiscover_modules

logger = logging.getLogger("image2model.embedded")

REAP_INTERVAL_SECONDS = 60
_lock = threading.Lock()
_worker: dramatiq.Worker | None = None
_stop = threading.Event()


def embedded_workers_start() -> dramatiq.Worker | None:
    """Start in-process workers on the in-memory broker (embedded mode only, once)."""
    global _worker
    if settings.SERVICES_MODE:
        return None
    with _lock:
        if _worker is not None:
            return _worker
        autodiscover_modules(*settings.DRAMATIQ_AUTODISCOVER_MODULES)
        _worker = dramatiq.Worker(
            dramatiq.get_broker(),
            worker_threads=settings.EMBEDDED_WORKER_THREADS,
            worker_timeout=200,
        )
        _worker.start()
        atexit.register(_shutdown)
    threading.Thread(target=_reaper, name="embedded-reaper", daemon=True).start()
    logger.info("embedded workers started (%d threads)", settings.EMBEDDED_WORKER_THREADS)
    return _worker


def _shutdown() -> None:
    _stop.set()
    if _worker is not None:
        _worker.stop(timeout=5_000)


def _reaper() -> None:
    """Housekeeping the scheduler process does in the services mode.

    At start, every running job belongs to a process that is gone (this is the only process)
    and every queued job lost its in-memory message: reap all of them at once. Then look for
    stale jobs every minute.
    """
    from django.db import connection

    from apps.jobs.services import jobs_reap

    first = True
    while True:
        try:
            if first:
                counts = jobs_reap(stale_after=timedelta(0), resend_after=timedelta(0))
            else:
                counts = jobs_reap(stale_after=timedelta(seconds=settings.JOB_STALE_AFTER_SECONDS))
            if any(counts.values()):
                logger.info("reaped jobs: %s", counts)
            first = False
        except Exception:
            logger.warning("embedded reaper failed; will try again", exc_info=True)
        finally:
            connection.close()
        if _stop.wait(REAP_INTERVAL_SECONDS):
            return
