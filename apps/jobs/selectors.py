"""Reads of the jobs app: its public read API (downloads and console use these)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone

from apps.jobs.models import Artifact, Job, JobEvent, WorkerHeartbeat

__all__ = [
    "BatchSummary",
    "artifact_get",
    "artifact_get_for_owner",
    "artifacts_for_batch",
    "batch_summary",
    "events_for_batch",
    "generators_describe",
    "job_counts",
    "job_counts_since",
    "job_duration_buckets",
    "job_get_for_owner",
    "jobs_for_batch",
    "model_artifacts_by_job",
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
    return list(
        Job.objects.filter(batch_id=batch_id)
        .select_related("source_image")
        .order_by("source_image__position", "created_at")
    )


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


def model_artifacts_by_job(*, batch_id) -> dict:
    """The batch's live model files by job id, for the status body (no joins beyond the job)."""
    artifacts = Artifact.objects.filter(
        job__batch_id=batch_id, kind=Artifact.Kind.MODEL, expired_at__isnull=True
    ).order_by("format")
    return {artifact.job_id: artifact for artifact in artifacts}


def artifact_get_for_owner(*, artifact_id, owner) -> Artifact | None:
    return (
        Artifact.objects.select_related("job")
        .filter(pk=artifact_id, job__batch__owner=owner, expired_at__isnull=True)
        .first()
    )


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
