from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone
from django_cleanup import cleanup

from apps.core.models import TimeStampedModel


class Job(TimeStampedModel):
    """One generation for one source image. The row is the truth about its state."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELED = "canceled"

    TERMINAL = (Status.SUCCEEDED, Status.FAILED, Status.CANCELED)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    batch = models.ForeignKey("uploads.Batch", on_delete=models.CASCADE, related_name="jobs")
    source_image = models.ForeignKey(
        "uploads.SourceImage", on_delete=models.CASCADE, related_name="jobs"
    )
    status = models.CharField(
        max_length=10, choices=Status.choices, default=Status.QUEUED, db_index=True
    )
    stage = models.CharField(max_length=20, default="queued")
    progress = models.PositiveSmallIntegerField(null=True, blank=True)
    queue_position = models.PositiveIntegerField(null=True, blank=True)
    message = models.CharField(max_length=200, blank=True)
    generator = models.CharField(max_length=64)
    model = models.CharField(max_length=100, blank=True)
    params = models.JSONField(default=dict, blank=True)
    upstream_request_id = models.CharField(max_length=100, blank=True)
    # Set just before a paid submit is sent: with no request id beside it, the submit's outcome
    # is unknown, and the job must not be submitted again blindly.
    upstream_submitted_at = models.DateTimeField(null=True, blank=True)
    # The generator asked for, when a fallback ran instead (``generator`` is the one that ran).
    requested_generator = models.CharField(max_length=64, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    requeued_by_reaper = models.BooleanField(default=False)
    cancel_requested = models.BooleanField(default=False)
    error_code = models.CharField(max_length=50, blank=True)
    error_message = models.CharField(max_length=500, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    event_seq = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["batch", "source_image__position", "created_at"]
        indexes = [models.Index(fields=["status", "heartbeat_at"])]

    def __str__(self) -> str:
        return f"Job {self.id} ({self.status})"

    @property
    def is_terminal(self) -> bool:
        return self.status in self.TERMINAL


class JobEvent(models.Model):
    """Append-only log of every change of a job; the source of truth for streams."""

    id = models.BigAutoField(primary_key=True)
    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="events")
    batch = models.ForeignKey("uploads.Batch", on_delete=models.CASCADE, related_name="+")
    seq = models.PositiveIntegerField()
    batch_seq = models.PositiveBigIntegerField()
    type = models.CharField(max_length=20)
    payload = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["batch_seq"]
        constraints = [
            models.UniqueConstraint(fields=["job", "seq"], name="uniq_event_job_seq"),
            models.UniqueConstraint(fields=["batch", "batch_seq"], name="uniq_event_batch_seq"),
        ]

    def __str__(self) -> str:
        return f"{self.type} #{self.seq} of job {self.job_id}"


@cleanup.select
class Artifact(TimeStampedModel):
    """A stored output of a job (model, preview, converted format)."""

    class Kind(models.TextChoices):
        MODEL = "model"
        PREVIEW = "preview"
        CONVERTED = "converted"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="artifacts")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    format = models.CharField(max_length=10)
    filename = models.CharField(max_length=160)
    file = models.FileField(upload_to="results/", max_length=255)
    size = models.PositiveBigIntegerField()
    sha256 = models.CharField(max_length=64)
    content_type = models.CharField(max_length=60)
    face_count = models.PositiveIntegerField(null=True, blank=True)
    expired_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["job", "kind", "format"]
        constraints = [
            models.UniqueConstraint(fields=["job", "kind", "format"], name="uniq_artifact_format")
        ]

    def __str__(self) -> str:
        return self.filename


class WorkerHeartbeat(models.Model):
    """A worker process says it is alive every few seconds; health counts the fresh ones."""

    worker_id = models.CharField(max_length=100, primary_key=True)
    hostname = models.CharField(max_length=255)
    pid = models.PositiveIntegerField()
    embedded = models.BooleanField(default=False)
    started_at = models.DateTimeField()
    last_seen = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return self.worker_id


class IdempotencyRecord(models.Model):
    """The first answer to a create request sent with an ``Idempotency-Key``.

    A record without a response is a request still being processed. Records are kept for
    ``IDEMPOTENCY_WINDOW``; an older one is replaced by the next request with its key.
    """

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    request_hash = models.CharField(max_length=64)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["owner", "key"], name="uniq_idempotency_key_per_owner")
        ]

    def __str__(self) -> str:
        return f"{self.key} ({self.owner_id})"
