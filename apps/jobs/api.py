"""v1 endpoints of the jobs app: upload, task status and models, in the old service's shapes."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.utils import timezone
from ninja import File, Form, Router, Schema, UploadedFile

from apps.accounts import services as account_services
from apps.accounts.auth import ApiKeyOrSession, anonymous_rate_limit
from apps.core.errors import NotFound
from apps.core.ids import parse_uuid
from apps.jobs import selectors, services, status_cache
from apps.jobs.presenters import V1_JOB_STATUS, v1_batch_status_body, v1_download_path
from apps.jobs.providers import generator_default_id, generators_all
from apps.uploads import selectors as upload_selectors
from apps.uploads.services import IncomingFile

generate_auth = ApiKeyOrSession(scope="generate", limit_group="upload")
read_auth = ApiKeyOrSession(scope="read", limit_group="read")
upload_router = Router(tags=["upload"], auth=generate_auth)
status_router = Router(tags=["status"], auth=read_auth)
models_router = Router(tags=["models"])

INVALID_TASK_ID = "Invalid task ID format. Expected UUID format."
INVALID_JOB_ID = "Invalid job ID format. Expected UUID format."


class UploadedFileOut(Schema):
    file_id: str
    filename: str
    file_size: int
    content_type: str
    status: str
    task_id: str | None


class BatchUploadOut(Schema):
    batch_id: str
    job_id: str
    task_id: str
    uploaded_files: list[UploadedFileOut]
    face_limit: int | None
    total_files: int
    status: str
    message: str
    model: str
    stream_url: str
    websocket_url: str


def _upload(request: HttpRequest, files: list[UploadedFile], model, face_limit, params):
    batch, jobs = services.batch_submit(
        owner=request.owner,
        api_key=request.api_key,
        files=[IncomingFile(name=upload.name or "", stream=upload) for upload in files],
        generator_id=model,
        params=services.params_from_text(params, field="body -> params"),
        face_limit=face_limit,
    )
    token = account_services.stream_token_sign(
        user_id=request.owner.pk, resource=f"batch:{batch.id}"
    )
    uploaded = [
        {
            "file_id": str(job.source_image.id),
            "filename": job.source_image.original_filename,
            "file_size": job.source_image.size,
            "content_type": job.source_image.content_type,
            "status": "uploaded",
            "task_id": str(job.id),
        }
        for job in jobs
    ]
    return {
        "batch_id": str(batch.id),
        "job_id": str(batch.id),
        "task_id": str(batch.id),
        "uploaded_files": uploaded,
        "face_limit": face_limit,
        "total_files": len(jobs),
        "status": "uploaded",
        "message": "Files uploaded successfully, processing started",
        "model": batch.generator,
        "stream_url": f"/api/v1/status/tasks/{batch.id}/stream?token={token}",
        "websocket_url": f"/ws/batches/{batch.id}/?token={token}",
    }


@upload_router.post(
    "/", response=BatchUploadOut, summary="Upload images (up to UPLOAD_MAX_FILES) as one batch"
)
def upload_batch(
    request: HttpRequest,
    files: File[list[UploadedFile]],
    face_limit: Form[int | None] = None,
    model: Form[str | None] = None,
    params: Form[str | None] = None,
):
    return _upload(request, files, model, face_limit, params)


@upload_router.post("/image", response=BatchUploadOut, summary="Upload one image")
def upload_image(
    request: HttpRequest,
    file: File[UploadedFile],
    face_limit: Form[int | None] = None,
    model: Form[str | None] = None,
    params: Form[str | None] = None,
):
    return _upload(request, [file], model, face_limit, params)


def _batch_for(request: HttpRequest, task_id: str):
    batch_id = parse_uuid(task_id, message=INVALID_TASK_ID)
    batch = upload_selectors.batch_get_for_owner(batch_id=batch_id, owner=request.owner)
    if batch is None:
        raise NotFound("Task not found")
    return batch


@status_router.get("/tasks/{task_id}/status", summary="Status of a batch and of each file")
def task_status(request: HttpRequest, task_id: str):
    batch_id = parse_uuid(task_id, message=INVALID_TASK_ID)
    body = status_cache.body(
        batch_id, request.owner.pk, read=lambda: _task_status_read(batch_id, request.owner)
    )
    if body is None:
        raise NotFound("Task not found")
    return {**body, "timestamp": timezone.now().isoformat()}


def _task_status_read(batch_id, owner) -> dict[str, Any] | None:
    found = selectors.batch_status_for_owner(batch_id=batch_id, owner=owner)
    if found is None:
        return None
    batch, jobs, models = found
    return v1_batch_status_body(batch, jobs, selectors.batch_summary(jobs), models)


class GenerateIn(Schema):
    file_id: str
    model: str | None = None
    face_limit: int | None = None
    params: dict[str, Any] = {}


@models_router.post("/generate", auth=generate_auth, summary="Start one job for an uploaded file")
def generate(request: HttpRequest, payload: GenerateIn):
    image_id = parse_uuid(payload.file_id, message="Invalid file ID format. Expected UUID format.")
    image = upload_selectors.source_image_get_for_owner(image_id=image_id, owner=request.owner)
    if image is None:
        raise NotFound("File not found")
    job = services.job_generate(
        owner=request.owner,
        image=image,
        generator_id=payload.model,
        params=payload.params,
        face_limit=payload.face_limit,
        api_key=request.api_key,
    )
    return {
        "job_id": str(job.id),
        "batch_id": str(job.batch_id),
        "task_id": str(job.batch_id),
        "file_id": str(image.id),
        "model": job.generator,
        "status": "queued",
        "message": "Generation started",
        "stream_url": _job_stream_url(request, job.id),
    }


def _job_stream_url(request: HttpRequest, job_id) -> str:
    token = account_services.stream_token_sign(user_id=request.owner.pk, resource=f"job:{job_id}")
    return f"/api/v1/status/jobs/{job_id}/stream?token={token}"


@models_router.get("/job/{job_id}", auth=read_auth, summary="Status of one job")
def job_status(request: HttpRequest, job_id: str):
    job = selectors.job_get_for_owner(
        job_id=parse_uuid(job_id, message=INVALID_JOB_ID), owner=request.owner
    )
    if job is None:
        raise NotFound("Job not found")
    model = next((a for a in job.artifacts.all() if a.kind == "model" and not a.expired_at), None)
    return {
        "job_id": str(job.id),
        "batch_id": str(job.batch_id),
        "file_id": str(job.source_image_id),
        "filename": job.source_image.original_filename,
        "model": job.generator,
        "status": V1_JOB_STATUS[job.status],
        "stage": job.stage,
        "progress": 100 if job.status == "succeeded" else job.progress,
        "queue_position": job.queue_position,
        "message": job.message,
        "error": job.error_message or None,
        "error_code": job.error_code or None,
        "attempts": job.attempts,
        "result_url": v1_download_path(job.batch_id, model.filename) if model else None,
        "estimated_remaining": None,
        "stream_url": _job_stream_url(request, job.id),
        "created_at": job.created_at.isoformat(),
        "started_at": job.started_at.isoformat() if job.started_at else None,
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
    }


@models_router.get("/available", summary="Every generator with its parameters")
def available(request: HttpRequest):
    anonymous_rate_limit(request)
    default = generator_default_id()
    return [
        {
            **generator.describe(),
            "name": generator.id,
            "display_name": generator.name,
            "default": generator.id == default,
        }
        for generator in generators_all()
    ]
