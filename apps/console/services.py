"""Housekeeping across apps: each app's own prune service, run in one place."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings

from apps.jobs import services as job_services
from apps.logs import services as log_services

__all__ = ["housekeeping_run"]

logger = logging.getLogger("image2model.console")


def housekeeping_run() -> dict[str, dict]:
    """Reaping of stale jobs, retention cleanup, log rotation and pruning.

    Each step runs on its own: a failing one (a full disk, a missing permission) is logged and
    reported, and never stops the others. Reaping goes first: stuck jobs matter most.
    """
    steps = {
        "reap": lambda: job_services.jobs_reap(
            stale_after=timedelta(seconds=settings.JOB_STALE_AFTER_SECONDS)
        ),
        "cleanup": lambda: job_services.files_cleanup(
            older_than=timedelta(hours=settings.RETENTION_HOURS)
        ),
        "rotate": lambda: log_services.logs_rotate(
            max_bytes=settings.LOG_ROTATE_MAX_BYTES,
            max_age=timedelta(hours=settings.LOG_ROTATE_MAX_AGE_HOURS),
            keep=settings.LOG_ROTATE_KEEP,
        ),
        "prune": lambda: log_services.logs_prune(
            older_than=timedelta(days=settings.LOG_RETENTION_DAYS)
        ),
        "idempotency": lambda: {"deleted": job_services.idempotency_prune()},
    }
    results: dict[str, dict] = {}
    for name, step in steps.items():
        try:
            results[name] = step()
        except Exception as error:
            logger.exception("housekeeping step %s failed", name)
            results[name] = {"error": str(error) or type(error).__name__}
    return results
