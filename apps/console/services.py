"""Housekeeping across apps: each app's own prune service, run in one place."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings

from apps.jobs import services as job_services
from apps.logs import services as log_services

__all__ = ["housekeeping_run"]


def housekeeping_run() -> dict[str, dict]:
    """Retention cleanup, log rotation and pruning, and reaping of stale jobs."""
    return {
        "cleanup": job_services.files_cleanup(older_than=timedelta(hours=settings.RETENTION_HOURS)),
        "rotate": log_services.logs_rotate(
            max_bytes=settings.LOG_ROTATE_MAX_BYTES,
            max_age=timedelta(hours=settings.LOG_ROTATE_MAX_AGE_HOURS),
            keep=settings.LOG_ROTATE_KEEP,
        ),
        "prune": log_services.logs_prune(older_than=timedelta(days=settings.LOG_RETENTION_DAYS)),
        "reap": job_services.jobs_reap(
            stale_after=timedelta(seconds=settings.JOB_STALE_AFTER_SECONDS)
        ),
    }
