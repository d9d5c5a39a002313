"""Writes of the uploads app: its public write API.

``batch_create`` checks every file before it writes anything, so a refused upload leaves no
rows and no files. It must be called inside the caller's transaction (jobs creates the Jobs of
the batch in the same one); if that transaction fails, the caller discards the stored files
with ``batch_files_discard``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import IO, Any

from django.conf import settings
from django.core.files.storage import default_storage
from django.db import connection, transaction

from apps.core.errors import InvalidInput
from apps.uploads.metrics import UPLOADED_BYTES, UPLOADED_FILES
from apps.uploads.models import Batch, SourceImage
from apps.uploads.names import display_filename, filename_problem, output_stem, unique_stems
from apps.uploads.validation import ImageFacts, ImageRejected, image_inspect

__all__ = [
    "IncomingFile",
    "batch_create",
    "batch_create_for_image",
    "batch_delete",
    "batch_event_seq_next",
    "batch_files_discard",
    "source_image_path",
    "source_images_expire",
]

logger = logging.getLogger("image2model.uploads")


@dataclass(frozen=True)
class IncomingFile:
    """One file as received: the client's name and a readable, seekable stream."""

    name: str
    stream: IO[bytes]


def files_check(files: list[IncomingFile]) -> list[ImageFacts]:
    """Check count, names and contents of every file; raise one InvalidInput listing all."""
    if not files:
        raise InvalidInput("No files provided", problem_code="NO_FILES")
    if len(files) > settings.UPLOAD_MAX_FILES:
        raise InvalidInput(
            f"Too many files. Maximum allowed: {settings.UPLOAD_MAX_FILES}, received: {len(files)}",
            problem_code="TOO_MANY_FILES",
        )
    facts, errors = [], []
    for incoming in files:
        shown = display_filename(incoming.name)
        problem = filename_problem(incoming.name)
        if problem is None:
            try:
                facts.append(image_inspect(incoming.stream, max_pixels=settings.UPLOAD_MAX_PIXELS))
                continue
            except ImageRejected as rejected:
                problem = str(rejected)
        errors.append({"filename": shown, "error": problem})
    if errors:
        message = "; ".join(f"{error['filename']}: {error['error']}" for error in errors)
        raise InvalidInput(
            f"File validation failed: {message}",
            details={"errors": errors},
            problem_code="INVALID_FILE",
        )
    return facts


def batch_create(
    *,
    owner,
    files: list[IncomingFile],
    generator: str,
    params: dict[str, Any],
    api_key=None,
    face_limit: int | None = None,
) -> tuple[Batch, list[SourceImage]]:
    """Check and store the files, then create the Batch and its SourceImages."""
    facts = files_check(files)
    batch = Batch(
        owner=owner, api_key=api_key, generator=generator, params=params, face_limit=face_limit
    )
    names = [display_filename(incoming.name) for incoming in files]
    stems = unique_stems([output_stem(name) for name in names])
    stored: list[str] = []
    try:
        with transaction.atomic():
            batch.save()
            images = []
            for position, (incoming, fact, name, stem) in enumerate(
                zip(files, facts, names, stems, strict=True)
            ):
                image = SourceImage(
                    batch=batch,
                    position=position,
                    original_filename=name,
                    output_stem=stem,
                    sha256=fact.sha256,
                    content_type=fact.content_type,
                    format=fact.format,
                    width=fact.width,
                    height=fact.height,
                    size=fact.size,
                )
                incoming.stream.seek(0)
                image.file.name = default_storage.save(
                    source_image_path(batch.id, image.id, fact.extension), incoming.stream
                )
                stored.append(image.file.name)
                images.append(image)
            SourceImage.objects.bulk_create(images)
    except BaseException:
        batch_files_discard(stored)
        raise
    UPLOADED_FILES.inc(len(images))
    UPLOADED_BYTES.inc(sum(image.size for image in images))
    return batch, images


def source_image_path(batch_id, image_id, extension: str) -> str:
    return f"uploads/{batch_id}/{image_id}.{extension}"


def batch_files_discard(paths: list[str]) -> None:
    """Delete stored files of an upload that did not commit."""
    for path in paths:
        try:
            default_storage.delete(path)
        except OSError:
            logger.warning("could not delete %s after a failed upload", path, exc_info=True)


def batch_event_seq_next(*, batch_id, count: int = 1) -> int:
    """Next number of the batch's event sequence; call inside the event's transaction.

    With ``count`` > 1 it takes ``count`` numbers and returns the last of them. The row lock
    orders the events of one batch by commit, so a stream that replays "after sequence N"
    never skips an event that committed late. One statement (UPDATE ... RETURNING), because
    every writer of the batch waits for this lock.
    """
    table = connection.ops.quote_name(Batch._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET event_seq = event_seq + %s WHERE id = %s "  # noqa: S608
            "RETURNING event_seq",
            [count, Batch._meta.pk.get_db_prep_value(batch_id, connection)],
        )
        row = cursor.fetchone()
    if row is None:
        raise Batch.DoesNotExist(f"batch {batch_id} does not exist")
    return int(row[0])


def batch_create_for_image(
    *,
    owner,
    image: SourceImage,
    generator: str,
    params: dict[str, Any],
    api_key=None,
    face_limit: int | None = None,
) -> Batch:
    """A new batch for one more generation of an image the owner already uploaded."""
    return Batch.objects.create(
        owner=owner, api_key=api_key, generator=generator, params=params, face_limit=face_limit
    )


def source_images_expire(*, image_ids: list, dry_run: bool = False) -> tuple[int, int]:
    """Delete the stored originals of these images and mark them expired: (files, bytes).

    The conditional update claims each row first, so two cleanups running at once never count
    (or delete) the same file twice.
    """
    from django.utils import timezone

    candidates = SourceImage.objects.filter(pk__in=image_ids, expired_at__isnull=True)
    if dry_run:
        sizes = list(candidates.values_list("size", flat=True))
        return len(sizes), sum(sizes)
    files = size = 0
    for image in candidates.only("id", "file", "size"):
        if SourceImage.objects.filter(pk=image.pk, expired_at__isnull=True).update(
            expired_at=timezone.now()
        ):
            default_storage.delete(image.file.name)
            files += 1
            size += image.size
    return files, size


def batch_delete(*, batch_id) -> None:
    """Delete a batch and everything it owns; stored files go once the transaction commits."""
    Batch.objects.filter(pk=batch_id).delete()
