"""How jobs and batches look in the v1 API (shared by the status, models and stream endpoints)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from django.utils import timezone

from apps.jobs.models import Artifact, Job
from apps.jobs.selectors import BatchSummary

V1_JOB_STATUS = {
    "queued": "queued",
    "running": "processing",
    "succeeded": "completed",
    "failed": "failed",
    "canceled": "cancelled",
}


def v1_batch_status(summary: BatchSummary) -> str:
    """queued | processing | completed | failed | cancelled (the old vocabulary)."""
    status = summary.status
    if status in {"completed", "partially_completed"}:
        return "completed"
    return {"canceled": "cancelled"}.get(status, status)


def v1_download_path(batch_id, filename: str) -> str:
    return f"/api/v1/download/{batch_id}/{quote(filename)}"


def v1_file_entry(job: Job, model: Artifact | None = None) -> dict[str, Any]:
    entry = {
        "file_id": str(job.source_image_id),
        "job_id": str(job.id),
        "filename": job.source_image.original_filename,
        "status": V1_JOB_STATUS[job.status],
        "stage": job.stage,
        "progress": 100 if job.status == Job.Status.SUCCEEDED else job.progress,
        "queue_position": job.queue_position,
        "message": job.message,
        "error": job.error_message or None,
        "error_code": job.error_code or None,
        "download_url": None,
        "model_filename": None,
    }
    if model is not None:
        entry["download_url"] = v1_download_path(job.batch_id, model.filename)
        entry["model_filename"] = model.filename
        entry["file_size"] = model.size
        entry["model_format"] = model.format
    return entry


def v1_batch_result(batch_id, summary: BatchSummary, entries: list[dict]) -> dict[str, Any]:
    """The result of a finished batch, shaped like the old service's batch summary."""
    return {
        "job_id": str(batch_id),
        "status": summary.status,
        "total_files": summary.total,
        "successful_files": summary.succeeded,
        "failed_files": summary.failed,
        "cancelled_files": summary.canceled,
        "results": entries,
        "message": (
            f"Batch processing completed. {summary.succeeded} successful, "
            f"{summary.failed} failed, {summary.canceled} cancelled."
        ),
    }


def v1_batch_status_body(batch, jobs: list[Job], summary: BatchSummary, models: dict) -> dict:
    """The batch status without its ``timestamp`` (added as it is sent: the rest may be kept
    and sent again while the batch does not change, see status_cache)."""
    entries = [v1_file_entry(job, models.get(job.id)) for job in jobs]
    done = summary.succeeded + summary.failed + summary.canceled
    body: dict[str, Any] = {
        "task_id": str(batch.id),
        "job_id": str(batch.id),
        "batch_id": str(batch.id),
        "status": v1_batch_status(summary),
        "batch_status": summary.status,
        "state": summary.status.upper(),
        "progress": summary.progress,
        "current": done,
        "total": summary.total,
        "total_files": summary.total,
        "successful_files": summary.succeeded,
        "failed_files": summary.failed,
        "message": f"{done} of {summary.total} files processed",
        "files": entries,
    }
    if summary.finished:
        body["result"] = v1_batch_result(batch.id, summary, entries)
    return body


# --- API v2 --------------------------------------------------------------------------------------


def v2_artifact(artifact: Artifact, link_expires_at) -> dict[str, Any]:
    from django.urls import reverse

    from apps.jobs.selectors import artifact_link_sign

    token = artifact_link_sign(artifact.id)
    return {
        "id": str(artifact.id),
        "kind": artifact.kind,
        "format": artifact.format,
        "filename": artifact.filename,
        "size": artifact.size,
        "sha256": artifact.sha256,
        "content_type": artifact.content_type,
        "face_count": artifact.face_count,
        "url": reverse("api-v1:download_direct", args=[token]),
        "url_expires_at": link_expires_at,
    }


def _eta_seconds(job: Job, now) -> int | None:
    """Known only for a running job that has reported progress: the rest at the same pace."""
    if job.status != Job.Status.RUNNING or not job.started_at or not job.progress:
        return None
    elapsed = (now - job.started_at).total_seconds()
    if elapsed <= 0 or job.progress >= 100:
        return None
    return max(0, round(elapsed * (100 - job.progress) / job.progress))


def _events_url(kind: str, object_id, user_id) -> str:
    """The stream's path, with a stream token when the reader is known (for EventSource)."""
    path = f"/api/v2/{kind}/{object_id}/events"
    if user_id is None:
        return path
    from apps.accounts.services import stream_token_sign

    singular = "batch" if kind == "batches" else "job"
    token = stream_token_sign(user_id=user_id, resource=f"{singular}:{object_id}")
    return f"{path}?token={token}"


def v2_job(
    job: Job, artifacts: list[Artifact] | None = None, now=None, user_id=None
) -> dict[str, Any]:
    """A job as API v2 shows it; ``artifacts`` defaults to the job's unexpired ones."""
    from datetime import timedelta

    from django.conf import settings

    now = now or timezone.now()
    if artifacts is None:
        artifacts = [a for a in job.artifacts.all() if a.expired_at is None]
    expires = now + timedelta(seconds=settings.DOWNLOAD_LINK_MAX_AGE_SECONDS)
    error = None
    if job.status == Job.Status.FAILED or job.error_code:
        error = {"code": job.error_code or "FAILED", "message": job.error_message or job.message}
    return {
        "id": str(job.id),
        "batch_id": str(job.batch_id),
        "file_name": job.source_image.original_filename,
        "status": job.status,
        "stage": job.stage,
        "progress": 100 if job.status == Job.Status.SUCCEEDED else (job.progress or 0),
        "message": job.message,
        "queue_position": job.queue_position if not job.is_terminal else None,
        "eta_seconds": _eta_seconds(job, now),
        "generator": job.generator,
        "requested_generator": job.requested_generator or job.generator,
        "params": job.params,
        "attempts": job.attempts,
        "error": error,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "artifacts": [v2_artifact(artifact, expires) for artifact in artifacts],
        "events_url": _events_url("jobs", job.id, user_id),
    }


def v2_batch(
    batch, summary: BatchSummary, jobs: list[dict] | None = None, user_id=None
) -> dict[str, Any]:
    body = {
        "id": str(batch.id),
        "status": summary.status,
        "finished": summary.finished,
        "generator": batch.generator,
        "params": batch.params,
        "created_at": batch.created_at,
        "progress": summary.progress,
        "counts": {
            "total": summary.total,
            "queued": summary.queued,
            "running": summary.running,
            "succeeded": summary.succeeded,
            "failed": summary.failed,
            "canceled": summary.canceled,
        },
        "events_url": _events_url("batches", batch.id, user_id),
        "archive_url": f"/api/v1/download/{batch.id}/archive" if summary.succeeded else None,
    }
    if jobs is not None:
        body["jobs"] = jobs
    return body


def summary_from_counts(batch) -> BatchSummary:
    """The summary of a batch annotated by ``selectors.batches_for_owner`` (no job rows read)."""
    total = batch.n_total
    return BatchSummary(
        total=total,
        queued=batch.n_queued,
        running=batch.n_running,
        succeeded=batch.n_succeeded,
        failed=batch.n_failed,
        canceled=batch.n_canceled,
        progress=round((batch.n_progress or 0) / total) if total else 0,
    )
