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
        "timestamp": timezone.now().isoformat(),
    }
    if summary.finished:
        body["result"] = v1_batch_result(batch.id, summary, entries)
    return body
