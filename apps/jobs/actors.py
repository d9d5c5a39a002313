"""Dramatiq actors of the jobs app: thin (string ids in), they call the pipeline.

Dramatiq's defaults (10-minute limit, 20 retries over days) are wrong for paid, slow
generation, so every option is explicit. Only transient faults come back as exceptions; the
pipeline ends every other failure in a terminal state itself.
"""

from __future__ import annotations

import dramatiq
from django.conf import settings

from apps.jobs import pipeline

GENERATION_QUEUE = "generation"


# A job held by another worker is looked at again this many times (each after the stale
# period) before the duplicate message is dropped; the reaper still covers the job.
BUSY_RECHECKS = 10


def _retry_transient(retries: int, exception: BaseException) -> bool:
    if isinstance(exception, pipeline.JobBusy):
        return retries < BUSY_RECHECKS
    # The pipeline raises this only while the job has attempts left (it counts them on the
    # row), so the message must come back whatever else was retried before.
    return isinstance(exception, pipeline.TransientJobError)


@dramatiq.actor(
    queue_name=GENERATION_QUEUE,
    time_limit=settings.JOB_TIME_LIMIT_SECONDS * 1000,
    retry_when=_retry_transient,
    min_backoff=2_000,
    max_backoff=120_000,
    max_age=24 * 3600 * 1000,
)
def job_run(job_id: str) -> None:
    pipeline.job_run(job_id=job_id)
