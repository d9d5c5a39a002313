"""Reads of the jobs app: its public read API (downloads and console use these)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core import signing
from django.db import connections
from django.db.models import QuerySet
from django.utils import timezone

from apps.core import rows
from apps.core.errors import NotFound, ServiceError
from apps.jobs.models import Artifact, Job, JobEvent, WorkerHeartbeat

__all__ = [
    "BatchSummary",
    "LinkExpired",
    "artifact_get",
    "artifact_get_for_owner",
    "artifact_link_sign",
    "artifact_link_verify",
    "artifacts_by_job",
    "artifacts_for_batch",
    "batch_finished",
    "batch_status_for_owner",
    "batch_summary",
    "batches_for_owner",
    "events_for_batch",
    "generators_describe",
    "job_counts",
    "job_counts_since",
    "job_duration_buckets",
    "job_get_for_owner",
    "jobs_for_batch",
    "jobs_for_owner",
    "queue_depths",
    "workers_alive_count",
]


@dataclass(frozen=True)
class BatchSummary:
    """A batch's state, derived from its jobs (never stored)."""

    total: int
    queued: int
    running: int
    succeeded: int
    failed: int
    canceled: int
    progress: int

    @property
    def finished(self) -> bool:
        return self.queued == 0 and self.running == 0

    @property
    def status(self) -> str:
        """queued | processing | completed | partially_completed | failed | canceled."""
        if not self.finished:
            return "queued" if self.queued == self.total else "processing"
        if self.succeeded == self.total:
            return "completed"
        if self.succeeded:
            return "partially_completed"
        if self.canceled == self.total:
            return "canceled"
        return "failed"


def jobs_for_batch(*, batch_id) -> list[Job]:
    """The batch's jobs with their source images, in upload order.

    ``Job.objects.filter(batch_id=…).select_related("source_image")
    .order_by("source_image__position", "created_at")``, in SQL written once: every status
    read runs it (decision 0018).
    """
    connection = connections[Job.objects.db]
    image_model = Job._meta.get_field("source_image").related_model
    qn = connection.ops.quote_name
    sql = (
        f"SELECT {rows.columns(Job, 'j', connection)}, "  # noqa: S608  names from the models
        f"{rows.columns(image_model, 'i', connection)} "
        f"FROM {qn(Job._meta.db_table)} j "
        f"JOIN {qn(image_model._meta.db_table)} i ON i.{qn('id')} = j.{qn('source_image_id')} "
        f"WHERE j.{qn('batch_id')} = %s ORDER BY i.{qn('position')}, j.{qn('created_at')}"
    )
    batch_pk = Job._meta.get_field("batch").target_field
    with connection.cursor() as cursor:
        cursor.execute(sql, [batch_pk.get_db_prep_value(batch_id, connection)])
        found = cursor.fetchall()
    jobs = []
    for row in found:
        job = rows.instance(Job, row, connection)
        Job.source_image.field.set_cached_value(
            job, rows.instance(image_model, row, connection, offset=rows.width(Job))
        )
        jobs.append(job)
    return jobs


def batch_finished(*, batch_id) -> bool:
    """True once no job of the batch is queued or running (one small query)."""
    return not Job.objects.filter(
        batch_id=batch_id, status__in=[Job.Status.QUEUED, Job.Status.RUNNING]
    ).exists()


def batch_summary(jobs: list[Job]) -> BatchSummary:
    counts = {status: 0 for status in Job.Status.values}
    progress = 0
    for job in jobs:
        counts[job.status] += 1
        progress += 100 if job.is_terminal else (job.progress or 0)
    return BatchSummary(
        total=len(jobs),
        queued=counts["queued"],
        running=counts["running"],
        succeeded=counts["succeeded"],
        failed=counts["failed"],
        canceled=counts["canceled"],
        progress=round(progress / len(jobs)) if jobs else 0,
    )


def job_get_for_owner(*, job_id, owner) -> Job | None:
    """The owner's job, or None (another owner's job is as absent as a missing one)."""
    return (
        Job.objects.select_related("source_image", "batch")
        .filter(pk=job_id, batch__owner=owner)
        .first()
    )


def artifacts_for_batch(*, batch_id, kind: str | None = None) -> QuerySet[Artifact]:
    artifacts = Artifact.objects.filter(job__batch_id=batch_id, expired_at__isnull=True)
    if kind:
        artifacts = artifacts.filter(kind=kind)
    return artifacts.select_related("job", "job__source_image").order_by(
        "job__source_image__position", "kind", "format"
    )


def batch_status_for_owner(*, batch_id, owner) -> tuple[Any, list[Job], dict] | None:
    """What a batch status shows, in one query: the owner's batch (None if it is not theirs),
    its jobs as :func:`jobs_for_batch` gives them, and its live model files by job id (the last
    format in name order when a job has several). Every status read runs it (decision 0018)."""
    # The stored files' names are not shown; leaving them out also spares building a file
    # object per row (django-cleanup's post_init handler reads every file field it sees).
    files = _NO_FILE
    owner_id = getattr(owner, "pk", owner)
    if owner_id is None:
        return None
    connection = connections[Job.objects.db]
    batch_model = Job._meta.get_field("batch").related_model
    image_model = Job._meta.get_field("source_image").related_model
    qn = connection.ops.quote_name
    sql = (
        f"SELECT {rows.columns(batch_model, 'b', connection)}, "  # noqa: S608  model names
        f"{rows.columns(Job, 'j', connection)}, "
        f"{rows.columns(image_model, 'i', connection, files)}, "
        f"{rows.columns(Artifact, 'a', connection, files)} "
        f"FROM {qn(batch_model._meta.db_table)} b "
        f"LEFT JOIN {qn(Job._meta.db_table)} j ON j.{qn('batch_id')} = b.{qn('id')} "
        f"LEFT JOIN {qn(image_model._meta.db_table)} i ON i.{qn('id')} = j.{qn('source_image_id')} "
        f"LEFT JOIN {qn(Artifact._meta.db_table)} a ON a.{qn('job_id')} = j.{qn('id')} "
        f"AND a.{qn('kind')} = %s AND a.{qn('expired_at')} IS NULL "
        f"WHERE b.{qn('id')} = %s AND b.{qn('owner_id')} = %s "
        f"ORDER BY i.{qn('position')}, j.{qn('created_at')}, a.{qn('format')}"
    )
    batch_pk = batch_model._meta.pk.get_db_prep_value(batch_id, connection)
    with connection.cursor() as cursor:
        cursor.execute(sql, [Artifact.Kind.MODEL.value, batch_pk, owner_id])
        found = cursor.fetchall()
    if not found:
        return None
    job_at = rows.width(batch_model)
    image_at = job_at + rows.width(Job)
    artifact_at = image_at + rows.width(image_model, files)
    batch = rows.instance(batch_model, found[0], connection)
    jobs: list[Job] = []
    models: dict = {}
    for row in found:
        if row[job_at + _JOB_ID_INDEX] is None:
            continue  # a batch without jobs: one row, all job columns NULL
        if not jobs or jobs[-1].pk != row[job_at + _JOB_ID_INDEX]:
            job = rows.instance(Job, row, connection, offset=job_at)
            image = rows.instance(image_model, row, connection, offset=image_at, defer=files)
            Job.source_image.field.set_cached_value(job, image)
            jobs.append(job)
        if row[artifact_at + _ARTIFACT_ID_INDEX] is not None:
            artifact = rows.instance(Artifact, row, connection, offset=artifact_at, defer=files)
            models[artifact.job_id] = artifact  # rows come in format order: the last one wins
    return batch, jobs, models


_NO_FILE = frozenset({"file"})
_JOB_ID_INDEX = [field.attname for field in Job._meta.concrete_fields].index("id")
_ARTIFACT_ID_INDEX = [
    field.attname for field in Artifact._meta.concrete_fields if field.attname not in _NO_FILE
].index("id")


def artifact_get_for_owner(*, artifact_id, owner) -> Artifact | None:
    return (
        Artifact.objects.select_related("job")
        .filter(pk=artifact_id, job__batch__owner=owner, expired_at__isnull=True)
        .first()
    )


def artifacts_by_job(*, job_ids: list) -> dict[Any, list[Artifact]]:
    """The unexpired outputs of these jobs, by job id (one query)."""
    found: dict[Any, list[Artifact]] = {}
    for artifact in Artifact.objects.filter(job_id__in=job_ids, expired_at__isnull=True).order_by(
        "kind", "format"
    ):
        found.setdefault(artifact.job_id, []).append(artifact)
    return found


def artifact_get(*, artifact_id) -> Artifact | None:
    return Artifact.objects.filter(pk=artifact_id, expired_at__isnull=True).first()


def events_for_batch(*, batch_id, after: int = 0) -> QuerySet[JobEvent]:
    return JobEvent.objects.filter(batch_id=batch_id, batch_seq__gt=after).order_by("batch_seq")


def workers_alive_count(*, within_seconds: int = 30) -> int:
    since = timezone.now() - timedelta(seconds=within_seconds)
    return WorkerHeartbeat.objects.filter(last_seen__gte=since).count()


def generators_describe() -> list[dict]:
    """Every generator's declaration and availability (health, admin, pages)."""
    from apps.jobs.providers import generators_all

    return [generator.describe() for generator in generators_all()]


def job_counts() -> dict[tuple[str, str, str], int]:
    """{(generator, status, error_code): count} over all jobs."""
    from django.db.models import Count

    rows = Job.objects.values_list("generator", "status", "error_code").annotate(n=Count("id"))
    return {(generator, status, code): n for generator, status, code, n in rows}


def job_duration_buckets(bounds) -> tuple[list[tuple[float, int]], float, int]:
    """Cumulative counts of finished jobs by run time, the sum of run times, and the count."""
    from django.db.models import Count, DurationField, ExpressionWrapper, F, Q, Sum

    duration = ExpressionWrapper(F("finished_at") - F("started_at"), output_field=DurationField())
    finished = Job.objects.filter(started_at__isnull=False, finished_at__isnull=False).annotate(
        run=duration
    )
    aggregates = {
        f"le_{i}": Count("id", filter=Q(run__lte=timedelta(seconds=b)))
        for i, b in enumerate(bounds)
    }
    result = finished.aggregate(total=Sum("run"), count=Count("id"), **aggregates)
    buckets = [(b, result[f"le_{i}"]) for i, b in enumerate(bounds)]
    total = result["total"].total_seconds() if result["total"] else 0.0
    return buckets, total, result["count"]


def queue_depths() -> dict[str, int]:
    """Messages waiting per queue (delayed retries included), from the broker itself."""
    import dramatiq

    broker = dramatiq.get_broker()
    depths = {}
    for queue in sorted(broker.get_declared_queues()):
        if queue.endswith(".DQ") or queue.endswith(".XQ"):
            continue
        client = getattr(broker, "client", None)
        if client is not None:  # Redis: the list of message ids, plus its delayed queue
            namespace = broker.namespace
            depths[queue] = int(client.llen(f"{namespace}:{queue}")) + int(
                client.llen(f"{namespace}:{queue}.DQ")
            )
        else:  # the in-memory broker of the embedded mode
            depths[queue] = broker.queues[queue].qsize() + broker.queues[f"{queue}.DQ"].qsize()
    return depths


def job_counts_since(*, since) -> dict[str, Any]:
    """Jobs created since ``since``, by status and by generator (the console dashboard)."""
    from django.db.models import Count

    recent = Job.objects.filter(created_at__gte=since)
    by_status = dict(recent.values_list("status").annotate(n=Count("id")))
    by_generator = dict(recent.values_list("generator").annotate(n=Count("id")))
    return {"total": sum(by_status.values()), "by_status": by_status, "by_generator": by_generator}


# --- signed links to stored outputs --------------------------------------------------------------

_LINK_SALT = "image2model.downloads.artifact"


class LinkExpired(ServiceError):
    status_code = 410
    error_code = "LINK_EXPIRED"


def artifact_link_sign(artifact_id) -> str:
    """A token for ``/api/v1/download/direct/<token>``, valid DOWNLOAD_LINK_MAX_AGE_SECONDS."""
    return signing.TimestampSigner(salt=_LINK_SALT).sign(str(artifact_id))


def artifact_link_verify(token: str) -> uuid.UUID:
    """The artifact id of a valid, unexpired token; NotFound or LinkExpired otherwise."""
    signer = signing.TimestampSigner(salt=_LINK_SALT)
    try:
        value = signer.unsign(token, max_age=settings.DOWNLOAD_LINK_MAX_AGE_SECONDS)
        return uuid.UUID(value)
    except signing.SignatureExpired:
        raise LinkExpired("Download link has expired; ask for a new one.") from None
    except (signing.BadSignature, ValueError):
        raise NotFound("Download link is invalid") from None


# --- lists of the API v2 -------------------------------------------------------------------------

BATCH_STATUSES = ("queued", "processing", "completed", "partially_completed", "failed", "canceled")


def batches_for_owner(
    *, owner, status=None, generator=None, created_after=None, created_before=None
) -> QuerySet:
    """The owner's batches with their job counts (``n_total``, ``n_queued``, …), filtered.

    A batch's status is derived from its jobs (see BatchSummary.status), so the filter on it is
    the same rule written over the counts.
    """
    from django.db.models import Case, Count, F, IntegerField, Q, Sum, Value, When
    from django.db.models.functions import Coalesce

    from apps.uploads import selectors as upload_selectors

    batches = upload_selectors.batch_list_for_owner(owner=owner).annotate(
        n_total=Count("jobs"),
        # As batch_summary: a finished job counts 100, an unfinished one its progress.
        n_progress=Sum(
            Case(
                When(jobs__status__in=Job.TERMINAL, then=Value(100)),
                default=Coalesce("jobs__progress", Value(0)),
                output_field=IntegerField(),
            )
        ),
        **{
            f"n_{name}": Count("jobs", filter=Q(jobs__status=name))
            for name in ("queued", "running", "succeeded", "failed", "canceled")
        },
    )
    if generator:
        batches = batches.filter(generator=generator)
    if created_after:
        batches = batches.filter(created_at__gt=created_after)
    if created_before:
        batches = batches.filter(created_at__lt=created_before)
    if status:
        unfinished = Q(n_queued__gt=0) | Q(n_running__gt=0)
        finished = Q(n_queued=0, n_running=0)
        batches = batches.filter(
            {
                "queued": Q(n_queued=F("n_total"), n_total__gt=0),
                "processing": unfinished & ~Q(n_queued=F("n_total")),
                "completed": finished & Q(n_succeeded=F("n_total")),
                "partially_completed": finished
                & Q(n_succeeded__gt=0)
                & ~Q(n_succeeded=F("n_total")),
                "canceled": finished & Q(n_canceled=F("n_total"), n_total__gt=0),
                "failed": finished & Q(n_succeeded=0) & ~Q(n_canceled=F("n_total")),
            }[status]
        )
    return batches


def jobs_for_owner(
    *,
    owner,
    status=None,
    generator=None,
    batch_id=None,
    created_after=None,
    created_before=None,
) -> QuerySet[Job]:
    jobs = Job.objects.filter(batch__owner=owner).select_related("source_image")
    if status:
        jobs = jobs.filter(status=status)
    if generator:
        jobs = jobs.filter(generator=generator)
    if batch_id:
        jobs = jobs.filter(batch_id=batch_id)
    if created_after:
        jobs = jobs.filter(created_at__gt=created_after)
    if created_before:
        jobs = jobs.filter(created_at__lt=created_before)
    return jobs.prefetch_related("artifacts")
