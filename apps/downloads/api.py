"""v1 download endpoints: list with signed links, one file, signed direct link, zip of a batch."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

from asgiref.sync import sync_to_async
from django.core.files.storage import default_storage
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, StreamingHttpResponse
from django.urls import reverse
from django.utils.http import content_disposition_header
from ninja import Router
from zipstream import ZipStream

from apps.accounts.auth import ApiKeyOrSession, anonymous_rate_limit
from apps.core.errors import InvalidInput, NotFound
from apps.core.ids import parse_uuid
from apps.downloads.metrics import SERVED_BYTES
from apps.downloads.services import download_link_sign, download_link_verify
from apps.jobs import selectors as job_selectors
from apps.uploads import selectors as upload_selectors

router = Router(tags=["download"])
auth = ApiKeyOrSession(scope="read", limit_group="read")

INVALID_JOB_ID = "Invalid job ID format. Expected UUID format."
# The name is only matched against stored names, never used as a path; these are refused
# because no stored name contains them.
_FORBIDDEN_IN_NAMES = ("/", "\\", "\x00", "\r", "\n")


def _batch_for(request: HttpRequest, job_id: str):
    batch = upload_selectors.batch_get_for_owner(
        batch_id=parse_uuid(job_id, message=INVALID_JOB_ID), owner=request.owner
    )
    if batch is None:
        raise NotFound("Job not found")
    return batch


def _signed_url(request: HttpRequest, artifact) -> str:
    path = reverse("api-v1:download_direct", kwargs={"token": download_link_sign(artifact.id)})
    return request.build_absolute_uri(path)


def _streamed(request: HttpRequest, chunks: Iterator[bytes], content_type: str):
    """A response that streams ``chunks`` without holding the file in memory.

    Under ASGI, Django collects a *sync* iterator into one list before sending (a 1 GB zip
    would sit in memory); an async iterator that pulls each chunk in a worker thread streams.
    """
    if isinstance(request, ASGIRequest):
        return StreamingHttpResponse(_pulled_in_threads(chunks), content_type=content_type)
    return StreamingHttpResponse(chunks, content_type=content_type)


async def _pulled_in_threads(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    iterator = iter(chunks)
    while (chunk := await sync_to_async(next, thread_sensitive=False)(iterator, None)) is not None:
        yield chunk


def _file_response(request: HttpRequest, artifact) -> StreamingHttpResponse:
    SERVED_BYTES.labels(artifact.kind).inc(artifact.size)
    response = _streamed(request, _chunks(artifact.file.name), artifact.content_type)
    response["Content-Length"] = str(artifact.size)
    response["Content-Disposition"] = content_disposition_header(True, artifact.filename)
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "private, max-age=3600"
    response["Content-Security-Policy"] = "default-src 'none'"
    return response


@router.get("/direct/{token}", url_name="download_direct", summary="Signed, expiring link")
def download_direct(request: HttpRequest, token: str):
    anonymous_rate_limit(request)
    artifact = job_selectors.artifact_get(artifact_id=download_link_verify(token))
    if artifact is None:
        raise NotFound("File not found")
    return _file_response(request, artifact)


@router.get("/{job_id}/all", auth=auth, summary="Models of a batch, with signed links")
def download_list(request: HttpRequest, job_id: str):
    batch = _batch_for(request, job_id)
    artifacts = list(job_selectors.artifacts_for_batch(batch_id=batch.id))
    previews = {a.job_id: a for a in artifacts if a.kind == "preview"}
    models = [a for a in artifacts if a.kind == "model"]
    files = []
    for model in models:
        preview = previews.get(model.job_id)
        files.append(
            {
                "filename": model.filename,
                "size": model.size,
                "mime_type": model.content_type,
                "created_time": model.created_at.timestamp(),
                "file_id": str(model.job.source_image_id),
                "job_id": str(model.job_id),
                "sha256": model.sha256,
                "rendered_image": {
                    "url": _signed_url(request, preview),
                    "file_size": preview.size,
                    "content_type": preview.content_type,
                }
                if preview
                else None,
            }
        )
    return {
        "job_id": str(batch.id),
        "files": files,
        "download_urls": [_signed_url(request, model) for model in models],
        "total_files": len(files),
    }


@router.get("/{job_id}/archive", auth=auth, summary="All models of a batch as one zip")
def download_archive(request: HttpRequest, job_id: str):
    batch = _batch_for(request, job_id)
    models = list(job_selectors.artifacts_for_batch(batch_id=batch.id, kind="model"))
    if not models:
        raise NotFound("No models are ready for this job yet")
    archive = ZipStream(sized=True)
    for model in models:
        archive.add(_chunks(model.file.name), model.filename, size=model.size)
    SERVED_BYTES.labels("archive").inc(len(archive))
    response = _streamed(request, iter(archive), "application/zip")
    response["Content-Length"] = str(len(archive))
    response["Content-Disposition"] = f'attachment; filename="models-{batch.id}.zip"'
    response["X-Content-Type-Options"] = "nosniff"
    return response


def _chunks(name: str, size: int = 256 * 1024):
    with default_storage.open(name, "rb") as stream:
        yield from iter(lambda: stream.read(size), b"")


@router.get("/{job_id}/{filename}", auth=auth, summary="One file of a batch")
def download_file(request: HttpRequest, job_id: str, filename: str):
    if not filename or any(part in filename for part in _FORBIDDEN_IN_NAMES):
        raise InvalidInput("Invalid filename")
    batch = _batch_for(request, job_id)
    artifact = next(
        (a for a in job_selectors.artifacts_for_batch(batch_id=batch.id) if a.filename == filename),
        None,
    )
    if artifact is None:
        raise NotFound("File not found")
    return _file_response(request, artifact)
