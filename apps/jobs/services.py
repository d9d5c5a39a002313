"""Writes of the jobs app: its public write API.

Services create and change jobs; the work itself is enqueued on commit, so a worker never
sees a job whose transaction has not committed.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from apps.core.errors import InvalidInput, ServiceError
from apps.jobs import status_cache
from apps.jobs.actors import job_run as job_run_actor
from apps.jobs.events import job_change, job_events_record_created
from apps.jobs.models import IdempotencyRecord, Job
from apps.jobs.pipeline import jobs_reap_stale
from apps.jobs.providers import generator_default_id, generator_get, generators_all
from apps.jobs.providers.base import Generator, ParameterError
from apps.uploads import services as upload_services

__all__ = [
    "IDEMPOTENCY_WINDOW",
    "IdempotencyKeyInUse",
    "IdempotencyKeyReused",
    "ImagesInUse",
    "NotCancelable",
    "NotFinished",
    "NotRetryable",
    "ParamsInvalid",
    "batch_cancel",
    "batch_delete",
    "batch_retry_failed",
    "batch_submit",
    "files_cleanup",
    "generator_params_clean",
    "idempotency_abandon",
    "idempotency_claim",
    "idempotency_finish",
    "idempotency_prune",
    "job_cancel",
    "job_delete",
    "job_generate",
    "job_retry",
    "jobs_files_delete",
    "jobs_reap",
    "params_from_text",
]

logger = logging.getLogger("image2model.jobs")


class ParamsInvalid(ServiceError):
    """Parameters do not fit the generator's declaration (422, with the field)."""

    status_code = 422
    error_code = "VALIDATION_ERROR"
    problem_code = "INVALID_PARAMS"


def params_from_text(raw: str | None, *, field: str = "params") -> dict[str, Any]:
    """The ``params`` form field of an upload: empty, or a JSON object (ParamsInvalid else)."""
    if raw is None or not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise ParamsInvalid(
            "params must be a JSON object",
            details={
                "validation_errors": [
                    {"field": field, "message": "must be a JSON object", "type": "type_error"}
                ]
            },
        )
    return value


def generator_params_clean(
    *, generator_id: str | None, params: dict[str, Any], face_limit: int | None = None
) -> tuple[Generator, dict[str, Any]]:
    """Check the generator and its parameters against the declaration."""
    generator = _generator_available(generator_id or generator_default_id())
    values = dict(params)
    if face_limit is not None:
        declared = generator.param("face_limit")
        if face_limit <= 0:
            raise InvalidInput(
                "face_limit must be a positive integer", problem_code="INVALID_PARAMS"
            )
        if declared is None:
            raise InvalidInput(
                f"{generator.id} does not take a face_limit", problem_code="INVALID_PARAMS"
            )
        if declared.maximum is not None and face_limit > declared.maximum:
            raise InvalidInput(
                f"face_limit must be at most {int(declared.maximum)} for {generator.id}",
                problem_code="INVALID_PARAMS",
            )
        if declared.minimum is not None and face_limit < declared.minimum:
            raise InvalidInput(
                f"face_limit must be at least {int(declared.minimum)} for {generator.id}",
                problem_code="INVALID_PARAMS",
            )
        values["face_limit"] = face_limit
    try:
        return generator, generator.clean_params(values)
    except ParameterError as error:
        raise ParamsInvalid(
            f"Invalid parameter {error.field}: {error.message}",
            details={
                "validation_errors": [
                    {
                        "field": f"params -> {error.field}",
                        "message": error.message,
                        "type": "value_error",
                    }
                ]
            },
        ) from None


def _generator_available(generator_id: str) -> Generator:
    generator = generator_get(generator_id)
    if generator is None:
        known = ", ".join(g.id for g in generators_all())
        raise InvalidInput(
            f"Unknown model {generator_id!r}. Available models: {known}.",
            problem_code="INVALID_MODEL",
        )
    available, reason = generator.availability()
    if not available:
        raise InvalidInput(
            f"Model {generator_id!r} is not available: {reason}",
            problem_code="GENERATOR_UNAVAILABLE",
        )
    return generator


def batch_submit(
    *,
    owner,
    files: list[upload_services.IncomingFile],
    generator_id: str | None = None,
    params: dict[str, Any] | None = None,
    face_limit: int | None = None,
    api_key=None,
):
    """Check and store the files, create the batch and one job per file, enqueue on commit."""
    generator, cleaned = generator_params_clean(
        generator_id=generator_id, params=params or {}, face_limit=face_limit
    )
    stored: list[str] = []
    try:
        with transaction.atomic():
            batch, images = upload_services.batch_create(
                owner=owner,
                files=files,
                generator=generator.id,
                params=cleaned,
                api_key=api_key,
                face_limit=face_limit,
            )
            stored = [image.file.name for image in images]
            jobs = _jobs_create(batch=batch, images=images, generator=generator, params=cleaned)
    except BaseException:
        upload_services.batch_files_discard(stored)
        raise
    return batch, jobs


def _jobs_create(*, batch, images, generator: Generator, params: dict[str, Any]) -> list[Job]:
    jobs = Job.objects.bulk_create(
        [
            Job(
                batch=batch,
                source_image=image,
                generator=generator.id,
                params=params,
                model=getattr(generator, "model", ""),
                message="Waiting for a worker",
            )
            for image in images
        ]
    )
    for job, image in zip(jobs, images, strict=True):
        job.source_image = image
    job_events_record_created(jobs)
    for job in jobs:
        # robust: a broker hiccup after the commit is logged, not raised into the request
        # (which would discard the files of a batch that exists); the reaper re-sends.
        transaction.on_commit(lambda job_id=str(job.id): job_run_actor.send(job_id), robust=True)
    return jobs


def job_generate(
    *,
    owner,
    image,
    generator_id: str | None,
    params: dict[str, Any],
    face_limit: int | None = None,
    api_key=None,
) -> Job:
    """Start one more job for an image already uploaded (in a new batch of its own)."""
    generator, cleaned = generator_params_clean(
        generator_id=generator_id, params=params, face_limit=face_limit
    )
    with transaction.atomic():
        batch = upload_services.batch_create_for_image(
            owner=owner,
            image=image,
            generator=generator.id,
            params=cleaned,
            api_key=api_key,
            face_limit=face_limit,
        )
        (job,) = _jobs_create(batch=batch, images=[image], generator=generator, params=cleaned)
    return job


def job_cancel(*, job: Job) -> Job:
    """Cancel a job: a queued one at once, a running one when its generator next checks."""
    canceled = job_change(
        job.id,
        changes={
            "status": Job.Status.CANCELED,
            "stage": "canceled",
            "message": "Canceled",
            "finished_at": timezone.now(),
            "cancel_requested": True,
            "queue_position": None,
        },
        only_if=Q(status=Job.Status.QUEUED),
    )
    if canceled is None:
        canceled = job_change(
            job.id,
            changes={"cancel_requested": True, "message": "Cancel requested"},
            only_if=Q(status=Job.Status.RUNNING),
        )
    return canceled or job


def jobs_reap(*, stale_after: timedelta, resend_after: timedelta | None = None) -> dict[str, int]:
    """Fail or re-queue jobs whose worker stopped beating; re-send long-queued ones."""
    if resend_after is None:
        resend_after = timedelta(seconds=settings.JOB_QUEUED_RESEND_SECONDS)
    return jobs_reap_stale(
        stale_after=stale_after,
        resend_after=resend_after,
        requeue=lambda job_id: job_run_actor.send(str(job_id)),
    )


def job_retry(*, job: Job) -> Job | None:
    """Run a failed or canceled job again, from the start (a new upstream request if any)."""
    retried = job_change(
        job.id,
        changes={
            "status": Job.Status.QUEUED,
            "stage": "queued",
            "progress": None,
            "queue_position": None,
            "message": "Retrying at the owner's request",
            "error_code": "",
            "error_message": "",
            "attempts": 0,
            "cancel_requested": False,
            "requeued_by_reaper": False,
            "upstream_request_id": "",
            "upstream_submitted_at": None,
            "heartbeat_at": None,
            "started_at": None,
            "finished_at": None,
        },
        only_if=Q(status__in=[Job.Status.FAILED, Job.Status.CANCELED]),
    )
    if retried is not None:
        transaction.on_commit(lambda: job_run_actor.send(str(job.id)), robust=True)
    return retried


def batch_cancel(*, batch_id) -> int:
    """Cancel every job of a batch that has not finished; returns how many."""
    jobs = list(Job.objects.filter(batch_id=batch_id).exclude(status__in=Job.TERMINAL))
    for job in jobs:
        job_cancel(job=job)
    return len(jobs)


def batch_retry_failed(*, batch_id) -> int:
    """Retry every failed or canceled job of a batch; returns how many."""
    jobs = Job.objects.filter(
        batch_id=batch_id, status__in=[Job.Status.FAILED, Job.Status.CANCELED]
    )
    return sum(1 for job in jobs if job_retry(job=job) is not None)


def files_cleanup(*, older_than: timedelta, dry_run: bool = False, batch_size: int = 500) -> dict:
    """Delete stored files of finished jobs past retention; keep the rows, marked expired.

    Counts only what this run itself expired, so two runs at once never count a file twice.
    """
    from django.core.files.storage import default_storage

    from apps.jobs.models import Artifact

    cutoff = timezone.now() - older_than
    old_jobs = Job.objects.filter(status__in=Job.TERMINAL, finished_at__lt=cutoff)
    totals = {"jobs": 0, "files": 0, "bytes": 0}
    artifacts = Artifact.objects.filter(job__in=old_jobs, expired_at__isnull=True).order_by("pk")
    for chunk in _chunks(list(artifacts.values_list("pk", "file", "size", "job_id")), batch_size):
        jobs = set()
        try:
            for pk, name, size, job_id in chunk:
                if dry_run or Artifact.objects.filter(pk=pk, expired_at__isnull=True).update(
                    expired_at=timezone.now()
                ):
                    jobs.add(job_id)
                    if not dry_run:
                        default_storage.delete(name)
                    totals["files"] += 1
                    totals["bytes"] += size
        finally:  # a failed file delete still leaves its row expired
            if jobs and not dry_run:
                status_cache.version_bump(*_batch_ids(jobs))
        totals["jobs"] += len(jobs)
    # An original goes once no job that uses it is unfinished or recent.
    busy = Job.objects.exclude(status__in=Job.TERMINAL) | Job.objects.filter(
        finished_at__gte=cutoff
    )
    image_ids = list(
        old_jobs.exclude(source_image_id__in=busy.values("source_image_id"))
        .values_list("source_image_id", flat=True)
        .distinct()
    )
    for chunk in _chunks(image_ids, batch_size):
        files, size = upload_services.source_images_expire(image_ids=chunk, dry_run=dry_run)
        totals["files"] += files
        totals["bytes"] += size
    return totals


def _chunks(items: list, size: int):
    for start in range(0, len(items), size):
        yield items[start : start + size]


def jobs_files_delete(*, job_ids: list) -> dict:
    """Delete the stored outputs of these jobs now (records stay, marked expired)."""
    from django.core.files.storage import default_storage

    from apps.jobs.models import Artifact

    totals = {"files": 0, "bytes": 0}
    expired = False
    try:
        for artifact in Artifact.objects.filter(job_id__in=job_ids, expired_at__isnull=True):
            if Artifact.objects.filter(pk=artifact.pk, expired_at__isnull=True).update(
                expired_at=timezone.now()
            ):
                expired = True
                default_storage.delete(artifact.file.name)
                totals["files"] += 1
                totals["bytes"] += artifact.size
    finally:  # a failed file delete still leaves its row expired
        if expired:
            status_cache.version_bump(*_batch_ids(job_ids))
    return totals


def _batch_ids(job_ids) -> list:
    return list(Job.objects.filter(pk__in=list(job_ids)).values_list("batch_id", flat=True))


# --- deletion ------------------------------------------------------------------------------------


class NotFinished(ServiceError):
    status_code = 409
    error_code = "JOB_NOT_FINISHED"


class ImagesInUse(ServiceError):
    status_code = 409
    error_code = "IMAGES_IN_USE"


class NotCancelable(ServiceError):
    status_code = 409
    error_code = "NOT_CANCELABLE"


class NotRetryable(ServiceError):
    status_code = 409
    error_code = "NOT_RETRYABLE"


def job_delete(*, job: Job) -> None:
    """Delete a finished job: its row, events and stored outputs (files go once this commits).

    An unfinished job is refused: a worker may still write to it. Its original stays with the
    batch.
    """
    with transaction.atomic():
        # Locked: a retry or cancel waits for the delete, then finds no job.
        locked = Job.objects.select_for_update().filter(pk=job.pk).first()
        if locked is None:
            return
        if locked.status not in Job.TERMINAL:
            raise NotFinished("The job has not finished; cancel it before deleting it.")
        locked.delete()


def batch_delete(*, batch_id) -> None:
    """Delete a batch whose jobs have all finished: originals, jobs, events, outputs."""
    with transaction.atomic():
        # Lock the batch's jobs so none can be retried between the check and the delete.
        jobs = list(Job.objects.select_for_update().filter(batch_id=batch_id))
        if any(job.status not in Job.TERMINAL for job in jobs):
            raise NotFinished("The batch has unfinished jobs; cancel them before deleting it.")
        # A v1 models/generate job in another batch may use an image of this one: deleting the
        # image would take that job (and its models) with it.
        borrowers = (
            Job.objects.filter(source_image__batch_id=batch_id)
            .exclude(batch_id=batch_id)
            .values_list("batch_id", flat=True)
            .distinct()
        )
        if borrowers:
            others = ", ".join(str(other) for other in borrowers[:5])
            raise ImagesInUse(
                f"Jobs of other batches use this batch's images ({others}); delete those first."
            )
        upload_services.batch_delete(batch_id=batch_id)


# --- idempotent creates --------------------------------------------------------------------------

IDEMPOTENCY_WINDOW = timedelta(hours=24)
# Longer than any create takes (upload checks, storing files): a pending record older than this
# belongs to a request that died.
IDEMPOTENCY_PENDING_FOR = timedelta(minutes=5)


class IdempotencyKeyReused(ServiceError):
    status_code = 409
    error_code = "IDEMPOTENCY_KEY_REUSED"


class IdempotencyKeyInUse(ServiceError):
    status_code = 409
    error_code = "IDEMPOTENCY_KEY_IN_USE"


def idempotency_claim(*, owner, key: str, request_hash: str):
    """Claim ``key`` for this request.

    Returns ``(record, True)`` when this request is the first (it must then call
    :func:`idempotency_finish` or :func:`idempotency_abandon`), ``(record, False)`` when the
    first request's answer is stored (replay it), ``(None, False)`` while the first request is
    still being processed. A different request under the same key raises IdempotencyKeyReused.
    The unique constraint decides between two requests at the same moment.
    """
    from django.db import IntegrityError

    try:
        with transaction.atomic():
            record = IdempotencyRecord.objects.create(
                owner=owner, key=key, request_hash=request_hash
            )
        return record, True
    except IntegrityError:
        pass
    record = IdempotencyRecord.objects.filter(owner=owner, key=key).first()
    if record is None:  # abandoned meanwhile: the caller tries again
        return None, False
    if record.created_at < timezone.now() - IDEMPOTENCY_WINDOW:
        IdempotencyRecord.objects.filter(pk=record.pk, created_at=record.created_at).delete()
        return None, False
    if record.request_hash != request_hash:
        raise IdempotencyKeyReused(
            "This Idempotency-Key was used with a different request in the last 24 hours."
        )
    if record.response_status is None:
        # The answer is stored in the batch's own transaction, so a record still without one
        # after IDEMPOTENCY_PENDING_FOR has no batch behind it (its request died): reclaim it.
        if record.created_at < timezone.now() - IDEMPOTENCY_PENDING_FOR:
            IdempotencyRecord.objects.filter(
                pk=record.pk, response_status__isnull=True, created_at=record.created_at
            ).delete()
        return None, False
    return record, False


def idempotency_finish(*, record, status: int, body) -> None:
    IdempotencyRecord.objects.filter(pk=record.pk).update(
        response_status=status, response_body=body
    )


def idempotency_abandon(*, record) -> None:
    """The first request failed: forget the key, so the client may send it again."""
    IdempotencyRecord.objects.filter(pk=record.pk, response_status__isnull=True).delete()


def idempotency_prune() -> int:
    """Delete the records past the window (housekeeping)."""
    cutoff = timezone.now() - IDEMPOTENCY_WINDOW
    return IdempotencyRecord.objects.filter(created_at__lt=cutoff).delete()[0]
