"""The embedded run mode: Dramatiq workers inside the serving process.

Started once, by the process that serves (from asgi.py), never by migrate or other commands;
under runserver's autoreload only the child that serves imports the ASGI application.
"""

from __future__ import annotations

import atexit
import logging
import threading

import dramatiq
from django.conf import settings
from django.utils.module_loading import autodiscover_modules

logger = logging.getLogger("image2model.embedded")

_lock = threading.Lock()
_worker: dramatiq.Worker | None = None


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
        atexit.register(_worker.stop, timeout=5_000)
    # The in-memory queue died with the previous process: queued jobs get their message again.
    threading.Thread(target=_requeue_queued, name="embedded-requeue", daemon=True).start()
    logger.info("embedded workers started (%d threads)", settings.EMBEDDED_WORKER_THREADS)
    return _worker


def _requeue_queued() -> None:
    from django.db import connection

    from apps.jobs.services import jobs_requeue_queued

    try:
        count = jobs_requeue_queued()
        if count:
            logger.info("re-sent %d queued jobs", count)
    except Exception:
        logger.warning("could not re-send queued jobs", exc_info=True)
    finally:
        connection.close()
