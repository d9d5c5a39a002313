"""Pages: upload, history, a batch's live progress, a job with its 3D viewer."""

from __future__ import annotations

from csp.decorators import csp_update
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from apps.accounts import services as account_services
from apps.jobs import selectors, services
from apps.jobs.presenters import V1_JOB_STATUS, v1_download_path
from apps.jobs.providers import generator_default_id, generators_all
from apps.uploads import selectors as upload_selectors

FACE_LIMIT_PRESETS = [("Auto", ""), ("Low", 5000), ("Medium", 10000), ("High", 20000)]


@login_required
def upload_page(request: HttpRequest) -> HttpResponse:
    generators = [g.describe() for g in generators_all()]
    return render(
        request,
        "jobs/upload.html",
        {
            "generators": generators,
            "page_config": {
                "generators": generators,
                "default_generator": generator_default_id(),
                "max_files": settings.UPLOAD_MAX_FILES,
                "max_file_size": settings.UPLOAD_MAX_FILE_SIZE,
                "max_pixels": settings.UPLOAD_MAX_PIXELS,
                "accepted_types": ["image/jpeg", "image/png", "image/webp"],
                "face_limit_presets": FACE_LIMIT_PRESETS,
                "upload_url": "/api/v1/upload/",
                "batch_url": reverse("jobs:batch", args=["00000000-0000-0000-0000-000000000000"]),
            },
        },
    )


@login_required
def history_page(request: HttpRequest) -> HttpResponse:
    batches = upload_selectors.batch_list_for_owner(owner=request.user).prefetch_related("images")
    page = Paginator(batches, 12).get_page(request.GET.get("page"))
    rows = []
    for batch in page.object_list:
        jobs = selectors.jobs_for_batch(batch_id=batch.id)
        summary = selectors.batch_summary(jobs)
        rows.append({"batch": batch, "summary": summary, "images": list(batch.images.all())[:4]})
    return render(request, "jobs/history.html", {"page": page, "rows": rows})


def _batch_or_404(request: HttpRequest, batch_id):
    batch = upload_selectors.batch_get_for_owner(batch_id=batch_id, owner=request.user)
    if batch is None:
        raise Http404("No such batch")
    return batch


@login_required
def batch_page(request: HttpRequest, batch_id) -> HttpResponse:
    batch = _batch_or_404(request, batch_id)
    jobs = selectors.jobs_for_batch(batch_id=batch.id)
    summary = selectors.batch_summary(jobs)
    models = {a.job_id: a for a in selectors.artifacts_for_batch(batch_id=batch.id, kind="model")}
    rows = [
        {"job": job, "status": V1_JOB_STATUS[job.status], "model": models.get(job.id)}
        for job in jobs
    ]
    return render(
        request,
        "jobs/batch.html",
        {
            "batch": batch,
            "summary": summary,
            "rows": rows,
            "page_config": {
                "batch_id": str(batch.id),
                "websocket_path": f"/ws/batches/{batch.id}/",
                "status_url": f"/api/v1/status/tasks/{batch.id}/status",
                "stream_token": account_services.stream_token_sign(
                    user_id=request.user.pk, resource=f"batch:{batch.id}"
                ),
            },
        },
    )


# What the vendored <model-viewer> needs beyond the site-wide policy, on this page only: it
# compiles WebAssembly decoders ('wasm-unsafe-eval' allows no JavaScript eval) and adds one
# fixed style element (allowed by its hash; tests/pages fails if a new version changes it).
MODEL_VIEWER_CSP = {
    "script-src": ["'wasm-unsafe-eval'"],
    "style-src": ["'sha256-PXtZZkJMMyc18o/DN1ZEFOJ2qEGq95IQbVaJFMOXOb0='"],
}


@login_required
@csp_update(MODEL_VIEWER_CSP)
def job_page(request: HttpRequest, job_id) -> HttpResponse:
    job = selectors.job_get_for_owner(job_id=job_id, owner=request.user)
    if job is None:
        raise Http404("No such job")
    artifacts = list(job.artifacts.filter(expired_at__isnull=True))
    model = next((a for a in artifacts if a.kind == "model"), None)
    preview = next((a for a in artifacts if a.kind == "preview"), None)
    duration = None
    if job.started_at and job.finished_at:
        duration = (job.finished_at - job.started_at).total_seconds()
    return render(
        request,
        "jobs/job.html",
        {
            "job": job,
            "status": V1_JOB_STATUS[job.status],
            "artifacts": artifacts,
            "model": model,
            "preview": preview,
            "duration": duration,
            "model_url": v1_download_path(job.batch_id, model.filename) if model else None,
            "preview_url": v1_download_path(job.batch_id, preview.filename) if preview else None,
            "downloads": [(a, v1_download_path(job.batch_id, a.filename)) for a in artifacts],
        },
    )


@login_required
@require_POST
def batch_cancel(request: HttpRequest, batch_id) -> HttpResponse:
    batch = _batch_or_404(request, batch_id)
    count = services.batch_cancel(batch_id=batch.id)
    messages.info(request, f"Canceled {count} unfinished file(s).")
    return redirect("jobs:batch", batch_id=batch.id)


@login_required
@require_POST
def batch_retry(request: HttpRequest, batch_id) -> HttpResponse:
    batch = _batch_or_404(request, batch_id)
    count = services.batch_retry_failed(batch_id=batch.id)
    messages.info(request, f"Retrying {count} file(s).")
    return redirect("jobs:batch", batch_id=batch.id)
