"""Recording job changes as JobEvents, and pushing them to the channel layer after commit.

Every change of a job's state goes through :func:`job_change`: the row update and its event are
written in one transaction, so the event log and the row never disagree. The push to the
channel layer is only a wake-up for live streams; streams read the events from the table.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from typing import Any

from channels.layers import get_channel_layer
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from apps.jobs.models import Job, JobEvent
from apps.uploads.services import batch_event_seq_next

logger = logging.getLogger("image2model.jobs")

EVENT_MESSAGE_TYPE = "job.event"


def job_group(job_id) -> str:
    return f"job-{_hex(job_id)}"


def batch_group(batch_id) -> str:
    return f"batch-{_hex(batch_id)}"


def _hex(value) -> str:
    return value.hex if hasattr(value, "hex") else str(value).replace("-", "")


def job_snapshot(job: Job) -> dict[str, Any]:
    """What a stream shows of one job at one moment."""
    return {
        "job_id": str(job.id),
        "batch_id": str(job.batch_id),
        "file_id": str(job.source_image_id),
        "filename": job.source_image.original_filename,
        "output_stem": job.source_image.output_stem,
        "status": job.status,
        "stage": job.stage,
        "progress": job.progress,
        "queue_position": job.queue_position,
        "message": job.message,
        "error_code": job.error_code or None,
        "error": job.error_message or None,
        "attempts": job.attempts,
        "generator": job.generator,
        "updated_at": job.updated_at.isoformat(),
    }


def job_change(
    job_id, *, changes: dict[str, Any], event_type: str = "status", only_if: Q | None = None
) -> Job | None:
    """Apply ``changes`` to the job and append an event; None when ``only_if`` did not match.

    The batch row is locked first (for its event sequence), then the job row: every writer
    takes the two locks in that order, so concurrent workers of one batch cannot deadlock.
    """
    batch_id = Job.objects.values_list("batch_id", flat=True).get(pk=job_id)
    with transaction.atomic():
        batch_seq = batch_event_seq_next(batch_id=batch_id)
        rows = Job.objects.filter(pk=job_id)
        if only_if is not None:
            rows = rows.filter(only_if)
        updated = rows.update(**changes, event_seq=F("event_seq") + 1, updated_at=timezone.now())
        if not updated:
            transaction.set_rollback(True)
            return None
        job = Job.objects.select_related("source_image").get(pk=job_id)
        event = JobEvent.objects.create(
            job=job,
            batch_id=batch_id,
            seq=job.event_seq,
            batch_seq=batch_seq,
            type=event_type,
            payload=job_snapshot(job),
        )
        transaction.on_commit(lambda: event_push(event))
    return job


def job_events_record_created(jobs: list[Job]) -> None:
    """The first event of freshly created jobs (inside the creating transaction)."""
    for job in jobs:
        batch_seq = batch_event_seq_next(batch_id=job.batch_id)
        Job.objects.filter(pk=job.pk).update(event_seq=1)
        job.event_seq = 1
        event = JobEvent.objects.create(
            job=job,
            batch_id=job.batch_id,
            seq=1,
            batch_seq=batch_seq,
            type="created",
            payload=job_snapshot(job),
        )
        transaction.on_commit(lambda event=event: event_push(event))


_serving_loop: asyncio.AbstractEventLoop | None = None


def serving_loop_register(loop: asyncio.AbstractEventLoop) -> None:
    """Remember the server's event loop (consumers call this when a stream opens).

    The in-memory channel layer of the embedded mode keeps asyncio queues bound to that loop;
    a worker thread must hand its group_send to that loop instead of running its own.
    """
    global _serving_loop
    _serving_loop = loop


def _in_memory_send(layer, groups: list[str], message: dict) -> bool:
    loop = _serving_loop
    if loop is None or loop.is_closed() or type(layer).__name__ != "InMemoryChannelLayer":
        return False

    async def send_all() -> None:
        for group in groups:
            await layer.group_send(group, message)

    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        loop.create_task(send_all())
    else:
        asyncio.run_coroutine_threadsafe(send_all(), loop).result(timeout=5)
    return True


def event_message(event: JobEvent) -> dict[str, Any]:
    """The group message of one event. It carries the event itself, so a stream that has read
    everything before it can send it without reading the log again; any other stream reads the
    log (the message is still only a wake-up for it)."""
    return {
        "type": EVENT_MESSAGE_TYPE,
        "job_id": str(event.job_id),
        "batch_id": str(event.batch_id),
        "seq": event.seq,
        "batch_seq": event.batch_seq,
        "payload": event.payload,
    }


class _PushLoop:
    """One event loop thread per process for the pushes of sync code (workers, requests).

    ``async_to_sync`` made a new event loop for every call, and channels_redis keeps its Redis
    connections per loop: each push opened (and closed) two new Redis connections. On one
    long-lived loop the layer's connections are reused.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pid = 0

    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            # A forked child inherits the loop object but not its thread: start its own.
            if self._loop is None or self._pid != os.getpid() or self._loop.is_closed():
                loop = asyncio.new_event_loop()
                threading.Thread(
                    target=loop.run_forever, name="event-push-loop", daemon=True
                ).start()
                self._loop, self._pid = loop, os.getpid()
            return self._loop

    def run(self, coroutine, timeout: float) -> None:
        asyncio.run_coroutine_threadsafe(coroutine, self.loop()).result(timeout=timeout)


_push_loop = _PushLoop()


def event_push(event: JobEvent) -> None:
    """Wake the streams of the event's job and batch. A lost push loses nothing."""
    message = event_message(event)
    try:
        layer = get_channel_layer()
        if layer is None:
            return
        groups = [job_group(event.job_id), batch_group(event.batch_id)]
        if _in_memory_send(layer, groups, message):
            return

        async def send_all() -> None:
            for group in groups:
                await layer.group_send(group, message)

        _push_loop.run(send_all(), timeout=5)
    except Exception:  # a push is a hint: Redis trouble must never fail a job
        logger.warning("could not push event %s of job %s", event.seq, event.job_id, exc_info=True)
