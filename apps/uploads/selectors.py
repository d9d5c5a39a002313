"""Reads of the uploads app: its public read API."""

from __future__ import annotations

from django.db.models import QuerySet

from apps.uploads.models import Batch, SourceImage

__all__ = [
    "batch_get_for_owner",
    "batch_list_for_owner",
    "source_image_get_for_owner",
    "source_image_get_for_viewer",
]


def batch_get_for_owner(*, batch_id, owner) -> Batch | None:
    """The owner's batch, or None (someone else's batch is as absent as a missing one)."""
    return Batch.objects.filter(pk=batch_id, owner=owner).first()


def batch_list_for_owner(*, owner) -> QuerySet[Batch]:
    return Batch.objects.filter(owner=owner).order_by("-created_at")


def source_image_get_for_owner(*, image_id, owner) -> SourceImage | None:
    """The owner's image while its stored file exists (retention may have deleted it)."""
    return (
        SourceImage.objects.select_related("batch")
        .filter(pk=image_id, batch__owner=owner, expired_at__isnull=True)
        .first()
    )


def source_image_get_for_viewer(*, image_id, user) -> SourceImage | None:
    """The image for its owner, or for staff allowed to view batches in the admin (thumbnails)."""
    if user.is_active and user.is_staff and user.has_perm("uploads.view_batch"):
        return SourceImage.objects.filter(pk=image_id, expired_at__isnull=True).first()
    return source_image_get_for_owner(image_id=image_id, owner=user)
