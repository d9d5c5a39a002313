"""Saves and deletes of a batch, its jobs, their photos or artifacts through the ORM (the admin,
a cascade, a shell) make a new status version for the batch (see status_cache). The job
pipeline's own writes bump it where they happen (``job_change``, artifact expiry)."""

from __future__ import annotations

from django.db.models.signals import post_delete, post_save

from apps.jobs import status_cache
from apps.jobs.models import Artifact, Job

Batch = Job._meta.get_field("batch").related_model
SourceImage = Job._meta.get_field("source_image").related_model


def _batch_ids(instance) -> list:
    if isinstance(instance, Batch):
        return [instance.pk]
    if isinstance(instance, Job):
        return [instance.batch_id]
    if isinstance(instance, Artifact):
        return list(Job.objects.filter(pk=instance.job_id).values_list("batch_id", flat=True))
    return list(Job.objects.filter(source_image_id=instance.pk).values_list("batch_id", flat=True))


def status_rows_changed(sender, instance, **kwargs) -> None:
    status_cache.version_bump(*_batch_ids(instance))


def connect() -> None:
    for model in (Batch, Job, Artifact, SourceImage):
        for signal in (post_save, post_delete):
            signal.connect(
                status_rows_changed, sender=model, dispatch_uid=f"batch-status-{model._meta}"
            )
