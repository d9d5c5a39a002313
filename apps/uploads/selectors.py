"""Reads of the uploads app: its public read API."""

from __future__ import annotations

from django.db import connections
from django.db.models import QuerySet

from apps.core import rows
from apps.uploads.models import Batch, SourceImage

__all__ = [
    "batch_get_for_owner",
    "batch_list_for_owner",
    "source_image_get_for_owner",
    "source_image_get_for_viewer",
]


def batch_get_for_owner(*, batch_id, owner) -> Batch | None:
    """The owner's batch, or None (someone else's batch is as absent as a missing one).

    In SQL written once: every status read and stream starts here (decision 0018).
    """
    owner_id = getattr(owner, "pk", owner)
    if owner_id is None:
        return None
    connection = connections[Batch.objects.db]
    qn = connection.ops.quote_name
    sql = (
        f"SELECT {rows.columns(Batch, 'b', connection)} "  # noqa: S608  names from the models
        f"FROM {qn(Batch._meta.db_table)} b WHERE b.{qn('id')} = %s AND b.{qn('owner_id')} = %s"
    )
    params = [Batch._meta.pk.get_db_prep_value(batch_id, connection), owner_id]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    return None if row is None else rows.instance(Batch, row, connection)


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
