from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django_cleanup import cleanup

from apps.core.models import TimeStampedModel


class Batch(TimeStampedModel):
    """One upload request: who sent it, with which key, for which generator and parameters."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="batches"
    )
    api_key = models.ForeignKey(
        "accounts.ApiKey", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    generator = models.CharField(max_length=64)
    params = models.JSONField(default=dict, blank=True)
    # What the client sent as v1 face_limit (echoed back by the v1 upload response).
    face_limit = models.PositiveIntegerField(null=True, blank=True)
    # Counter behind the per-batch sequence of stream events (see jobs.events).
    event_seq = models.PositiveBigIntegerField(default=0)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "batches"

    def __str__(self) -> str:
        return f"Batch {self.id}"


@cleanup.select
class SourceImage(TimeStampedModel):
    """One uploaded image. Its stored path is made from ids, never from the client's name."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    batch = models.ForeignKey(Batch, on_delete=models.CASCADE, related_name="images")
    position = models.PositiveSmallIntegerField()
    original_filename = models.CharField(max_length=255)
    # Base name for outputs (chair.jpg → chair), unique within the batch.
    output_stem = models.CharField(max_length=120)
    file = models.FileField(upload_to="uploads/", max_length=255)
    sha256 = models.CharField(max_length=64)
    content_type = models.CharField(max_length=50)
    format = models.CharField(max_length=10)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    size = models.PositiveBigIntegerField()
    # Set when the retention cleanup deleted the stored file (the row and its name stay).
    expired_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["batch", "position"]
        constraints = [
            models.UniqueConstraint(fields=["batch", "position"], name="uniq_image_position"),
            models.UniqueConstraint(fields=["batch", "output_stem"], name="uniq_image_stem"),
        ]

    def __str__(self) -> str:
        return self.original_filename
