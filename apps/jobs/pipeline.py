"""Worker-side use cases: run one job from claim to a terminal state, and reap stale jobs.

No transaction is held while a generator runs; each state change is its own short
transaction (``events.job_change``). The pipeline never imports services or actors.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import close_old_connections, connection, transaction
from django.db.models import F, Q
from django.utils import timezone
from dramatiq import Retry
from dramatiq.middleware import TimeLimitExceeded

from apps.jobs import status_cache
from apps.jobs.events import job_change
from apps.jobs.models import Artifact, Job, WorkerHeartbeat
from apps.jobs.providers import generator_get
from apps.jobs.providers.base import (
    GenerationCanceled,
    GenerationError,
    Output,
    ParameterError,
    RunContext,
)

logger = logging.getLogger("image2model.jobs")

PROGRESS_MIN_INTERVAL_SECONDS = 0.25
MAX_RETRY_AFTER_SECONDS = 600
GENERATOR_SHARE = 90  # percent of a job's progress bar that belongs to the generator
CANCEL_CHECK_INTERVAL_SECONDS = 1.0
# Storing outputs smaller than this takes milliseconds: the job goes straight to done instead
# of reporting a "storing" stage that the next event replaces at once (one state change, one
# event and their round trips less per job).
STORING_STAGE_MIN_BYTES = 8_000_000


class TransientJobError(Retry):
    """Raised to the actor so Dramatiq retries the message later, with backoff."""


class JobBusy(Retry):
    """Another worker holds the job. Look again once its heartbeat could have gone stale:
    if that worker died, this message then takes the job over; if not, it is dropped."""


def job_claim(job_id) -> Job | None:
    """Take a queued job (or one whose worker died) for this worker; None if not ours to run.

    The conditional UPDATE makes a redelivered or duplicate message a no-op while the first
    worker is alive and beating.
    """
    now = timezone.now()
    stale = now - timedelta(seconds=settings.JOB_STALE_AFTER_SECONDS)
    return job_change(
        job_id,
        changes={
            "status": Job.Status.RUNNING,
            "stage": "starting",
            "progress": 0,
            "started_at": now,
            "heartbeat_at": now,
            "attempts": F("attempts") + 1,
            "error_code": "",
            "error_message": "",
            "message": "",
        },
        only_if=Q(status=Job.Status.QUEUED, cancel_requested=False)
        | Q(status=Job.Status.RUNNING, heartbeat_at__lt=stale),
    )


def job_run(*, job_id: str) -> None:
    """Run one job to a terminal state (or back to queued for a retry of a transient fault)."""
    job = job_claim(job_id)
    if job is None:
        # A job canceled while it was handed back to the queue ends here, not in limbo.
        job_change(
            job_id,
            changes={
                "status": Job.Status.CANCELED,
                "stage": "canceled",
                "message": "Canceled",
                "finished_at": timezone.now(),
                "queue_position": None,
            },
            only_if=Q(status=Job.Status.QUEUED, cancel_requested=True),
        )
        if Job.objects.filter(pk=job_id, status=Job.Status.RUNNING).exists():
            raise JobBusy(
                f"job {job_id} is running elsewhere",
                delay=(settings.JOB_STALE_AFTER_SECONDS + 5) * 1000,
            )
        logger.info("job %s is not claimable (finished or canceled)", job_id)
        return
    try:
        with _heartbeat(job.id):
            outputs = _generate(job)
        close_old_connections_outside_atomic()
        _store_outputs(job, outputs)
    except GenerationCanceled:
        job_finish(job.id, status=Job.Status.CANCELED, message="Canceled")
    except GenerationError as error:
        if error.transient and job.attempts < settings.JOB_MAX_RETRIES + 1:
            _requeue(job, error)
            delay = None
            if error.retry_after is not None:  # the upstream's own wait, within reason
                delay = int(min(error.retry_after, MAX_RETRY_AFTER_SECONDS) * 1000)
            raise TransientJobError(error.message, delay=delay) from error
        job_fail(job.id, code=error.code, message=error.message)
    except TimeLimitExceeded:
        job_fail(job.id, code="GENERATION_TIMEOUT", message="Generation took too long.")
    except Exception:
        logger.exception("job %s failed unexpectedly", job.id)
        job_fail(
            job.id, code="INTERNAL_ERROR", message="Generation failed unexpectedly. Please retry."
        )


def _generate(job: Job) -> list[Output]:
    generator = generator_get(job.generator)
    if generator is None:
        raise GenerationError("UNKNOWN_GENERATOR", f"Generator {job.generator!r} is not available.")
    with _local_copy(job.source_image.file.name) as image_path:
        tried = {generator.id}
        while True:
            try:
                return generator.run(image_path, job.params, _context(job))
            except GenerationError as error:
                fallback = _fallback_for(job, generator, error, tried)
                if fallback is None:
                    raise
            generator = fallback
            tried.add(generator.id)
            job = _switch_generator(job, generator)


def _context(job: Job) -> RunContext:
    submitted = job.upstream_submitted_at
    return RunContext(
        job_id=str(job.id),
        progress=_ProgressReporter(job.id),
        cancel_requested=_CancelCheck(job.id),
        upstream_request_id=job.upstream_request_id,
        upstream_submitted_at=submitted.isoformat() if submitted else "",
        record_upstream=_UpstreamRecorder(job.id),
    )


def _fallback_for(job: Job, generator, error: GenerationError, tried: set[str]):
    """The configured fallback when ``generator`` is unavailable, if it may run this job."""
    if error.code != "GENERATION_UNAVAILABLE":
        return None
    if job.upstream_request_id or job.upstream_submitted_at:
        return None  # something may already run upstream for this job: never a second one
    fallback = generator_get(settings.GENERATOR_FALLBACKS.get(generator.id, ""))
    if fallback is None or fallback.id in tried or not fallback.availability()[0]:
        return None
    return fallback


def _switch_generator(job: Job, fallback) -> Job:
    shared = {}
    for name, value in job.params.items():
        param = fallback.param(name)
        if param is None or value is None:
            continue
        try:
            shared[name] = param.clean(value)
        except ParameterError:
            continue  # out of the fallback's range: its default applies
    changed = job_change(
        job.id,
        changes={
            "requested_generator": job.requested_generator or job.generator,
            "generator": fallback.id,
            "model": getattr(fallback, "model", ""),
            "params": fallback.clean_params(shared),
            "stage": "fallback",
            "message": f"{job.generator} is unavailable; using {fallback.name}",
        },
    )
    logger.info("job %s falls back from %s to %s", job.id, job.generator, fallback.id)
    return changed


class _UpstreamRecorder:
    """Writes the upstream request id (or the moment a submit was sent) on the job at once."""

    def __init__(self, job_id) -> None:
        self.job_id = job_id

    def __call__(self, request_id: str, submitted_at: str) -> None:
        changes = {"upstream_request_id": request_id}
        if not request_id:
            changes["upstream_submitted_at"] = submitted_at or None
        Job.objects.filter(pk=self.job_id).update(**changes, updated_at=timezone.now())


_ARTIFACT_UPDATED_FIELDS = [
    "filename",
    "file",
    "size",
    "sha256",
    "content_type",
    "face_count",
    "expired_at",
    "updated_at",
]


def _store_outputs(job: Job, outputs: list[Output]) -> None:
    if sum(len(output.data) for output in outputs) >= STORING_STAGE_MIN_BYTES:
        job_change(  # not for a job that ended meanwhile (canceled, reaped): it keeps its state
            job.id,
            changes={"stage": "storing", "progress": 95, "message": "Storing the model"},
            event_type="progress",
            only_if=Q(status=Job.Status.RUNNING),
        )
    stem = job.source_image.output_stem
    artifacts: dict[tuple[str, str], Artifact] = {}  # the last output of a kind and format wins
    for output in outputs:
        suffix = "" if output.kind == Artifact.Kind.MODEL else f"-{output.kind}"
        path = f"results/{job.batch_id}/{job.id}/{output.kind}.{output.format}"
        default_storage.delete(path)  # a retried job overwrites its own earlier outputs
        stored = default_storage.save(path, ContentFile(output.data))
        artifacts[(output.kind, output.format)] = Artifact(
            job=job,
            kind=output.kind,
            format=output.format,
            filename=f"{stem}{suffix}.{output.format}",
            file=stored,
            size=len(output.data),
            sha256=hashlib.sha256(output.data).hexdigest(),
            content_type=output.content_type,
            face_count=glb_face_count(output.data) if output.format == "glb" else None,
            expired_at=None,
        )

    def artifacts_write(_job: Job) -> None:
        # One statement for all outputs; a retried job's rows are updated in place (same ids).
        Artifact.objects.bulk_create(
            list(artifacts.values()),
            update_conflicts=True,
            unique_fields=["job", "kind", "format"],
            update_fields=_ARTIFACT_UPDATED_FIELDS,
        )

    # The artifacts commit with the job's success (one transaction, no round trips of its
    # own). A job that stopped running meanwhile (canceled, reaped) still gets its rows, in a
    # transaction of their own, so its stored files stay known to downloads and cleanup.
    finished = job_finish(
        job.id, status=Job.Status.SUCCEEDED, message="Model ready", with_change=artifacts_write
    )
    if finished is None:
        with transaction.atomic():
            artifacts_write(job)
            status_cache.version_bump(job.batch_id)  # job_change bumps for the other path


def job_finish(job_id, *, status: str, message: str = "", with_change=None) -> Job | None:
    """End a running job in ``status`` (succeeded or canceled).

    ``with_change(job)`` runs in the same transaction if the job was still running.
    """
    return job_change(
        job_id,
        changes={
            "status": status,
            "stage": "done" if status == Job.Status.SUCCEEDED else status,
            "progress": 100 if status == Job.Status.SUCCEEDED else F("progress"),
            "finished_at": timezone.now(),
            "queue_position": None,
            "message": message,
        },
        only_if=Q(status=Job.Status.RUNNING),
        with_change=with_change,
    )


def job_fail(job_id, *, code: str, message: str) -> Job | None:
    """End a non-terminal job as failed, with a code and a message safe to show."""
    return job_change(
        job_id,
        changes={
            "status": Job.Status.FAILED,
            "stage": "failed",
            "finished_at": timezone.now(),
            "error_code": code,
            "error_message": message[:500],
            "queue_position": None,
            "message": "",
        },
        only_if=~Q(status__in=Job.TERMINAL),
    )


def _requeue(job: Job, error: GenerationError) -> None:
    if Job.objects.filter(pk=job.id, cancel_requested=True).exists():
        job_finish(job.id, status=Job.Status.CANCELED, message="Canceled")
        return
    logger.warning("job %s: transient fault %s, will retry", job.id, error.code)
    job_change(
        job.id,
        changes={
            "status": Job.Status.QUEUED,
            "stage": "retrying",
            "heartbeat_at": None,
            "message": f"Retrying after a temporary problem ({error.code})",
        },
        only_if=Q(status=Job.Status.RUNNING),
    )


def close_old_connections_outside_atomic() -> None:
    # A long generator call can outlive the database's idle timeout; drop a dead connection
    # before the next query instead of failing the job on it.
    if not connection.in_atomic_block:
        close_old_connections()


class _ProgressReporter:
    """Records progress as events, coalesced to a few per second; a new stage or queue
    position always passes."""

    def __init__(self, job_id) -> None:
        self.job_id = job_id
        self.last_at = 0.0
        self.last_stage = ""
        self.last_position: int | None = None

    def __call__(
        self, percent: int | None, stage: str, message: str, queue_position: int | None = None
    ) -> None:
        now = time.monotonic()
        same = (stage, queue_position) == (self.last_stage, self.last_position)
        if same and now - self.last_at < PROGRESS_MIN_INTERVAL_SECONDS:
            return
        self.last_at, self.last_stage, self.last_position = now, stage, queue_position
        changes = {
            "stage": stage[:20],
            "message": message[:200],
            "heartbeat_at": timezone.now(),
            "queue_position": queue_position,
        }
        if percent is not None:
            # The generator's 0-100 maps to 0-90: storing the outputs is the last stretch, so
            # the job's progress never goes backwards.
            changes["progress"] = round(max(0, min(100, percent)) * GENERATOR_SHARE / 100)
        job_change(
            self.job_id,
            changes=changes,
            event_type="progress",
            only_if=Q(status=Job.Status.RUNNING),
        )


class _CancelCheck:
    """Answers "was this job canceled?", asking the database at most once a second."""

    def __init__(self, job_id) -> None:
        self.job_id = job_id
        self.checked_at = 0.0
        self.canceled = False

    def __call__(self) -> bool:
        now = time.monotonic()
        if not self.canceled and now - self.checked_at >= CANCEL_CHECK_INTERVAL_SECONDS:
            self.checked_at = now
            self.canceled = Job.objects.filter(pk=self.job_id, cancel_requested=True).exists()
        return self.canceled


@contextmanager
def _heartbeat(job_id) -> Iterator[None]:
    """Touch ``heartbeat_at`` while the generator runs, so the reaper knows we are alive."""
    stop = threading.Event()

    def beat() -> None:
        try:
            while not stop.wait(settings.JOB_HEARTBEAT_SECONDS):
                Job.objects.filter(pk=job_id, status=Job.Status.RUNNING).update(
                    heartbeat_at=timezone.now()
                )
        except Exception:
            logger.warning("heartbeat of job %s stopped", job_id, exc_info=True)
        finally:
            connection.close()

    thread = threading.Thread(target=beat, name=f"heartbeat-{job_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


@contextmanager
def _local_copy(name: str) -> Iterator[Path]:
    """A local path of a stored file (the file itself on local storage, else a temp copy)."""
    try:
        yield Path(default_storage.path(name))
        return
    except NotImplementedError:
        pass
    with tempfile.TemporaryDirectory() as folder:
        target = Path(folder) / Path(name).name
        with default_storage.open(name) as source, open(target, "wb") as copy:
            shutil.copyfileobj(source, copy)
        yield target


def jobs_reap_stale(*, stale_after: timedelta, resend_after: timedelta, requeue) -> dict[str, int]:
    """Fail, or re-queue once, running jobs whose heartbeat stopped; re-send stuck queued jobs.

    ``requeue(job_id)`` sends the job's message again (the caller owns the actor). Sending a
    duplicate is harmless: the claim lets only one worker run a job.
    """
    cutoff = timezone.now() - stale_after
    counts = {"failed": 0, "requeued": 0, "resent": 0}
    requeued: set = set()
    stale_running = Job.objects.filter(status=Job.Status.RUNNING, heartbeat_at__lt=cutoff)
    for job_id, requeued_before in stale_running.values_list("id", "requeued_by_reaper"):
        if requeued_before:
            if job_fail(job_id, code="WORKER_LOST", message="The worker running this job stopped."):
                counts["failed"] += 1
            continue
        changed = job_change(
            job_id,
            changes={
                "status": Job.Status.QUEUED,
                "stage": "requeued",
                "requeued_by_reaper": True,
                "heartbeat_at": None,
                "message": "Re-queued after its worker stopped",
            },
            only_if=Q(status=Job.Status.RUNNING, heartbeat_at__lt=cutoff),
        )
        if changed:
            transaction.on_commit(lambda job_id=job_id: requeue(job_id), robust=True)
            counts["requeued"] += 1
            requeued.add(job_id)
    resend_cutoff = timezone.now() - resend_after
    stuck_queued = Job.objects.filter(status=Job.Status.QUEUED, updated_at__lt=resend_cutoff)
    for job_id in stuck_queued.exclude(pk__in=requeued).values_list("id", flat=True):
        # Touching updated_at resends a long-queued job at most once per resend period.
        Job.objects.filter(pk=job_id, status=Job.Status.QUEUED).update(updated_at=timezone.now())
        requeue(job_id)
        counts["resent"] += 1
    # Heartbeat rows of workers gone for a day only clutter the admin.
    WorkerHeartbeat.objects.filter(last_seen__lt=timezone.now() - timedelta(days=1)).delete()
    return counts


def glb_face_count(data: bytes) -> int | None:
    """Triangles in a GLB, read from its JSON chunk (no mesh is loaded)."""
    try:
        length = int.from_bytes(data[12:16], "little")
        document = json.loads(data[20 : 20 + length])
        total = 0
        for mesh in document.get("meshes", []):
            for primitive in mesh.get("primitives", []):
                if primitive.get("mode", 4) != 4:
                    continue
                accessor = primitive.get("indices", primitive["attributes"]["POSITION"])
                total += document["accessors"][accessor]["count"] // 3
        return total
    except (ValueError, KeyError, IndexError, TypeError):
        return None
