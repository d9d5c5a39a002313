"""API v2 of the jobs app: batches, jobs and generators as resources (docs/api-v2.md).

Errors are problem details (apps.core.problems). Creating a batch takes an ``Idempotency-Key``
and ``Prefer: wait=N``; lists are newest first with signed cursors.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from datetime import UTC, datetime
from typing import Any, Literal
from uuid import UUID

from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from ninja import Field, File, Form, Query, Router, Schema, Status, UploadedFile
from pydantic import field_validator

from apps.accounts.auth import ApiKeyOrSession
from apps.core.cursors import cursor_page
from apps.core.errors import InvalidInput, NotFound
from apps.jobs import presenters, selectors, services
from apps.jobs.providers import generator_default_id, generators_all
from apps.uploads import selectors as upload_selectors
from apps.uploads.services import IncomingFile

generate_auth = ApiKeyOrSession(scope="generate", limit_group="upload")
write_auth = ApiKeyOrSession(scope="generate", limit_group="read")
read_auth = ApiKeyOrSession(scope="read", limit_group="read")

batches_router = Router(tags=["batches"])
jobs_router = Router(tags=["jobs"])
generators_router = Router(tags=["generators"])

MAX_WAIT_SECONDS = 60
IDEMPOTENCY_WAIT_SECONDS = 10
_PREFER_WAIT = re.compile(r"(?:^|[;,\s])wait\s*=\s*(\d+)", re.IGNORECASE)

JobStatus = Literal["queued", "running", "succeeded", "failed", "canceled"]
BatchStatus = Literal[
    "queued", "processing", "completed", "partially_completed", "failed", "canceled"
]


# --- schemas -------------------------------------------------------------------------------------


class ProblemField(Schema):
    field: str
    message: str
    type: str
    in_: str | None = Field(None, alias="in", description="body, query, path, header or form")


class Problem(Schema):
    type: str
    title: str
    status: int
    detail: str
    instance: str
    code: str
    request_id: str
    errors: list[ProblemField] | None = None


class ArtifactOut(Schema):
    id: UUID
    kind: str
    format: str
    filename: str
    size: int
    sha256: str
    content_type: str
    face_count: int | None
    url: str = Field(description="Signed link; works without a key until url_expires_at")
    url_expires_at: datetime


class JobError(Schema):
    code: str
    message: str


class JobOut(Schema):
    id: UUID
    batch_id: UUID
    file_name: str
    status: JobStatus
    stage: str
    progress: int = Field(ge=0, le=100)
    message: str
    queue_position: int | None
    eta_seconds: int | None = Field(description="Seconds left, when known")
    generator: str
    requested_generator: str
    params: dict[str, Any]
    attempts: int
    error: JobError | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    artifacts: list[ArtifactOut]
    events_url: str


class Counts(Schema):
    total: int
    queued: int
    running: int
    succeeded: int
    failed: int
    canceled: int


class BatchOut(Schema):
    id: UUID
    status: BatchStatus
    finished: bool
    generator: str
    params: dict[str, Any]
    created_at: datetime
    progress: int = Field(ge=0, le=100)
    counts: Counts
    events_url: str
    archive_url: str | None
    jobs: list[JobOut] | None = Field(None, description="In a batch's own answers, not in lists")


class BatchPage(Schema):
    items: list[BatchOut]
    next_cursor: str | None


class JobPage(Schema):
    items: list[JobOut]
    next_cursor: str | None


def _iso_datetime(value: Any) -> Any:
    """ISO 8601 only (pydantic would also read a bare number as a Unix time), and in UTC: an
    offset PostgreSQL cannot store (beyond ±15:59) is then no longer a problem."""
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        raise ValueError("must be an ISO 8601 date-time, like 2026-11-25T18:00:00Z")
    return value


def _in_utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


_NUMBER = re.compile(r"[-+]?\d+(\.\d*)?([eE][-+]?\d+)?")
GENERATOR_ID = r"^[a-z0-9][a-z0-9_-]{0,63}$"


class ListFilters(Schema):
    limit: int = Field(20, ge=1, le=100)
    cursor: str | None = Field(None, max_length=500)
    generator: str | None = Field(None, pattern=GENERATOR_ID)
    created_after: datetime | None = Field(None, description="ISO 8601; newer than this")
    created_before: datetime | None = Field(None, description="ISO 8601; older than this")

    _iso = field_validator("created_after", "created_before", mode="before")(_iso_datetime)
    _utc = field_validator("created_after", "created_before", mode="after")(_in_utc)


class BatchFilters(ListFilters):
    status: BatchStatus | None = None


class JobFilters(ListFilters):
    status: JobStatus | None = None
    batch_id: UUID | None = None


class ParameterOut(Schema):
    name: str
    type: str
    description: str
    default: Any = None
    minimum: float | None = None
    maximum: float | None = None
    choices: list[Any] | None = None


class GeneratorOut(Schema):
    id: str
    name: str
    description: str
    default: bool = Field(description="Used when a batch names no generator")
    formats: list[str]
    params: list[ParameterOut]
    available: bool
    unavailable_reason: str | None
    circuit: Literal["closed", "open", "half_open"] | None = Field(
        description="Circuit-breaker state of an upstream generator; null for offline ones"
    )


ERRORS = {401: Problem, 403: Problem, 404: Problem, 422: Problem, 429: Problem}


# --- helpers -------------------------------------------------------------------------------------


def _batch_body(batch) -> dict[str, Any]:
    jobs = selectors.jobs_for_batch(batch_id=batch.id)
    summary = selectors.batch_summary(jobs)
    artifacts = selectors.artifacts_by_job(job_ids=[job.id for job in jobs])
    user_id = batch.owner_id
    return presenters.v2_batch(
        batch,
        summary,
        jobs=[presenters.v2_job(job, artifacts.get(job.id, []), user_id=user_id) for job in jobs],
        user_id=user_id,
    )


def _owned_batch(request: HttpRequest, batch_id: UUID):
    batch = upload_selectors.batch_get_for_owner(batch_id=batch_id, owner=request.owner)
    if batch is None:
        raise NotFound("No such batch.", error_code="NOT_FOUND")
    return batch


def _owned_job(request: HttpRequest, job_id: UUID):
    job = selectors.job_get_for_owner(job_id=job_id, owner=request.owner)
    if job is None:
        raise NotFound("No such job.", error_code="NOT_FOUND")
    return job


def _request_hash(files: list[UploadedFile], generator: str | None, params: dict) -> str:
    """What makes two creates the same request: the files' names and bytes, generator, params."""
    digest = hashlib.sha256()
    digest.update(json.dumps([generator or "", params], sort_keys=True).encode())
    for upload in files:
        digest.update(b"\0file\0" + (upload.name or "").encode())
        for chunk in upload.chunks():
            digest.update(chunk)
        upload.seek(0)
    return digest.hexdigest()


def _scope(name: str, filters: ListFilters) -> str:
    """The list and its filters (not the page size), which a cursor is bound to."""
    values = filters.dict(exclude={"cursor", "limit"})
    return name + "?" + json.dumps(values, sort_keys=True, default=str)


def _prefer_wait(request: HttpRequest) -> int | None:
    match = _PREFER_WAIT.search(request.headers.get("Prefer", ""))
    if not match:
        return None
    return max(1, min(int(match.group(1)), MAX_WAIT_SECONDS))


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> HttpResponse:
    from django.core.serializers.json import DjangoJSONEncoder

    response = JsonResponse(body, status=status, encoder=DjangoJSONEncoder, safe=False)
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def _create(request: HttpRequest, files, generator: str | None, params: dict, record=None):
    """Create the batch; with an idempotency record, store its answer in the same transaction,
    so a batch never exists without its answer (a crash before the commit leaves neither)."""
    with transaction.atomic():
        batch, _ = services.batch_submit(
            owner=request.owner,
            api_key=request.api_key,
            files=[IncomingFile(name=upload.name or "", stream=upload) for upload in files],
            generator_id=generator,
            params=params,
        )
        body = json.loads(_json(201, _batch_body(batch)).content)
        if record is not None:
            services.idempotency_finish(record=record, status=201, body=body)
    return body


def _claim(request: HttpRequest, key: str, request_hash: str):
    """Claim the key, waiting a little while an identical first request is still running."""
    deadline = time.monotonic() + IDEMPOTENCY_WAIT_SECONDS
    while True:
        record, first = services.idempotency_claim(
            owner=request.owner, key=key, request_hash=request_hash
        )
        if record is not None:
            return record, first
        if time.monotonic() > deadline:
            raise services.IdempotencyKeyInUse(
                "A request with this Idempotency-Key is still being processed; try again.",
                headers={"Retry-After": "1"},
            )
        time.sleep(0.1)


def _wait_until_finished(batch_id, seconds: int) -> None:
    """Return once the batch has finished, or after ``seconds``.

    The request's own thread waits (Django gives each ASGI request its own thread for sync
    code), polling the batch's job statuses twice a second.
    """
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if selectors.batch_finished(batch_id=batch_id):
            return
        time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))


# --- batches -------------------------------------------------------------------------------------


@batches_router.post(
    "",
    auth=generate_auth,
    response={201: BatchOut, 400: Problem, 409: Problem, 413: Problem, **ERRORS},
    summary="Create a batch: upload images and start one job per image",
    openapi_extra={
        "parameters": [
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "schema": {"type": "string", "maxLength": 255},
                "description": "The same key and request within 24 hours answer the first "
                "response again and create nothing; a different request is 409.",
            },
            {
                "name": "Prefer",
                "in": "header",
                "required": False,
                "schema": {"type": "string"},
                "description": "wait=N (1 to 60): answer when the batch has finished or after "
                "N seconds.",
            },
        ]
    },
)
def batch_create(
    request: HttpRequest,
    files: File[list[UploadedFile]],
    generator: Form[str | None] = None,
    params: Form[str | None] = None,
):
    cleaned = services.params_from_text(params)
    wait = _prefer_wait(request)
    key = request.headers.get("Idempotency-Key")
    record = None
    if key is not None:
        if not key.strip() or len(key) > 255 or any(ord(c) < 32 or ord(c) == 127 for c in key):
            raise InvalidInput(
                "Idempotency-Key must be 1 to 255 printable characters.",
                problem_code="INVALID_HEADER",
            )
        # The same request whether or not it names the default generator.
        request_hash = _request_hash(files, generator or generator_default_id(), cleaned)
        record, first = _claim(request, key, request_hash)
        if not first:
            body = record.response_body
            return _json(
                record.response_status,
                body,
                {"Idempotent-Replayed": "true", "Location": f"/api/v2/batches/{body['id']}"},
            )
    try:
        body = _create(request, files, generator, cleaned, record)
    except Exception:
        # Nothing was created (the transaction rolled back): the key is free again.
        if record is not None:
            services.idempotency_abandon(record=record)
        raise
    headers = {"Location": f"/api/v2/batches/{body['id']}"}
    if wait:
        _wait_until_finished(body["id"], wait)
        body = _batch_body(_owned_batch(request, UUID(body["id"])))
        headers["Preference-Applied"] = f"wait={wait}"
    return _json(201, body, headers)


@batches_router.get(
    "",
    auth=read_auth,
    response={200: BatchPage, 400: Problem, **ERRORS},
    summary="List batches, newest first",
)
def batch_list(request: HttpRequest, filters: Query[BatchFilters]):
    batches = selectors.batches_for_owner(
        owner=request.owner,
        status=filters.status,
        generator=filters.generator,
        created_after=filters.created_after,
        created_before=filters.created_before,
    )
    rows, next_cursor = cursor_page(
        batches, cursor=filters.cursor, limit=filters.limit, scope=_scope("batches", filters)
    )
    return {
        "items": [
            presenters.v2_batch(b, presenters.summary_from_counts(b), user_id=request.owner.pk)
            for b in rows
        ],
        "next_cursor": next_cursor,
    }


@batches_router.get(
    "/{batch_id}",
    auth=read_auth,
    response={200: BatchOut, **ERRORS},
    summary="A batch with its jobs",
)
def batch_get(request: HttpRequest, batch_id: UUID):
    return _batch_body(_owned_batch(request, batch_id))


@batches_router.post(
    "/{batch_id}/cancel",
    auth=write_auth,
    response={200: BatchOut, **ERRORS},
    summary="Cancel the batch's unfinished jobs",
)
def batch_cancel(request: HttpRequest, batch_id: UUID):
    batch = _owned_batch(request, batch_id)
    services.batch_cancel(batch_id=batch.id)
    return _batch_body(batch)


@batches_router.post(
    "/{batch_id}/retry",
    auth=write_auth,
    response={200: BatchOut, **ERRORS},
    summary="Run the batch's failed and canceled jobs again",
)
def batch_retry(request: HttpRequest, batch_id: UUID):
    batch = _owned_batch(request, batch_id)
    services.batch_retry_failed(batch_id=batch.id)
    return _batch_body(batch)


@batches_router.delete(
    "/{batch_id}",
    auth=write_auth,
    response={204: None, 409: Problem, **ERRORS},
    summary="Delete a finished batch: originals, jobs, events and models",
)
def batch_delete(request: HttpRequest, batch_id: UUID):
    batch = _owned_batch(request, batch_id)
    services.batch_delete(batch_id=batch.id)
    return Status(204, None)


# --- jobs ----------------------------------------------------------------------------------------


@jobs_router.get(
    "",
    auth=read_auth,
    response={200: JobPage, 400: Problem, **ERRORS},
    summary="List jobs, newest first",
)
def job_list(request: HttpRequest, filters: Query[JobFilters]):
    jobs = selectors.jobs_for_owner(
        owner=request.owner,
        status=filters.status,
        generator=filters.generator,
        batch_id=filters.batch_id,
        created_after=filters.created_after,
        created_before=filters.created_before,
    )
    rows, next_cursor = cursor_page(
        jobs, cursor=filters.cursor, limit=filters.limit, scope=_scope("jobs", filters)
    )
    items = [presenters.v2_job(job, user_id=request.owner.pk) for job in rows]
    return {"items": items, "next_cursor": next_cursor}


@jobs_router.get(
    "/{job_id}", auth=read_auth, response={200: JobOut, **ERRORS}, summary="A job with its outputs"
)
def job_get(request: HttpRequest, job_id: UUID):
    return presenters.v2_job(_owned_job(request, job_id), user_id=request.owner.pk)


@jobs_router.post(
    "/{job_id}/cancel",
    auth=write_auth,
    response={200: JobOut, 409: Problem, **ERRORS},
    summary="Cancel a queued or running job",
)
def job_cancel(request: HttpRequest, job_id: UUID):
    job = _owned_job(request, job_id)
    if job.is_terminal or services.job_cancel(job=job) is job:  # it ended before the update
        raise services.NotCancelable("The job has already finished.")
    return presenters.v2_job(_owned_job(request, job_id), user_id=request.owner.pk)


@jobs_router.post(
    "/{job_id}/retry",
    auth=write_auth,
    response={200: JobOut, 409: Problem, **ERRORS},
    summary="Run a failed or canceled job again",
)
def job_retry(request: HttpRequest, job_id: UUID):
    job = _owned_job(request, job_id)
    if services.job_retry(job=job) is None:
        raise services.NotRetryable(
            f"Only a failed or canceled job can be retried; it is {job.status}."
        )
    return presenters.v2_job(_owned_job(request, job_id), user_id=request.owner.pk)


@jobs_router.delete(
    "/{job_id}",
    auth=write_auth,
    response={204: None, 409: Problem, **ERRORS},
    summary="Delete a finished job: its record, events and models",
)
def job_delete(request: HttpRequest, job_id: UUID):
    services.job_delete(job=_owned_job(request, job_id))
    return Status(204, None)


# --- generators ----------------------------------------------------------------------------------


@generators_router.get(
    "",
    auth=read_auth,
    response={200: list[GeneratorOut], **ERRORS},
    summary="Generators: declarations, availability, circuit state",
)
def generator_list(request: HttpRequest):
    default = generator_default_id()
    return [
        {
            "id": info["id"],
            "name": info["name"],
            "description": info["description"],
            "default": info["id"] == default,
            "formats": info["supported_formats"],
            "params": info["parameters"],
            "available": info["available"],
            "unavailable_reason": info["unavailable_reason"],
            "circuit": info["circuit_state"],
        }
        for info in (generator.describe() for generator in generators_all())
    ]
