"""An upload handler that refuses oversize files and bodies while they stream in."""

from __future__ import annotations

import html

from django.conf import settings
from django.core.exceptions import SuspiciousOperation
from django.core.files.uploadhandler import FileUploadHandler
from django.http.multipartparser import MultiPartParser

from apps.core.errors import InvalidInput, PayloadTooLarge
from apps.uploads.names import display_filename, filename_problem


class UploadRefused(InvalidInput, SuspiciousOperation):
    """A file name refused while parsing: 400 in the API envelope, and 400 (not 500) on pages."""

    problem_code = "INVALID_FILE"


class UploadTooLarge(PayloadTooLarge, SuspiciousOperation):
    """A body or file over the limits: 413 in the API, 400 on pages (Django's own answer)."""

    problem_code = "FILE_TOO_LARGE"


def _megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):g} MB"


class SizeLimitedUploadHandler(FileUploadHandler):
    """Counts each file's bytes and stops at ``UPLOAD_MAX_FILE_SIZE`` with a 413.

    It passes every chunk on unchanged, so Django's memory and temporary-file handlers (listed
    after it) still store the file; only the counting is ours.
    """

    def handle_raw_input(self, input_data, META, content_length, boundary, encoding=None):
        limit = settings.UPLOAD_MAX_FILE_SIZE * settings.UPLOAD_MAX_FILES + 1024 * 1024
        if content_length and content_length > limit:
            raise UploadTooLarge(
                f"Request body is too large: at most {settings.UPLOAD_MAX_FILES} files of "
                f"{_megabytes(settings.UPLOAD_MAX_FILE_SIZE)} each are accepted."
            )
        return None

    def new_file(self, *args, **kwargs):
        super().new_file(*args, **kwargs)
        self.received = 0

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        self.received += len(raw_data)
        if self.received > settings.UPLOAD_MAX_FILE_SIZE:
            name = display_filename(self.file_name or "")
            raise UploadTooLarge(
                f"{name}: file is larger than the "
                f"{_megabytes(settings.UPLOAD_MAX_FILE_SIZE)} limit.",
                details={"errors": [{"filename": name, "error": "file too large"}]},
            )
        return raw_data

    def file_complete(self, file_size: int):
        return None


def refuse_unsafe_multipart_names() -> None:
    """Refuse file names with path separators or control characters, naming the file.

    Django's parser silently trims such names (``../../x.png`` becomes ``x.png``; ``..`` drops
    the file), so the client never learns that its file was renamed or lost. Django offers no
    hook between the raw name and the trimming, hence this small wrapper, installed once from
    ``UploadsConfig.ready``.
    """
    if getattr(MultiPartParser.sanitize_file_name, "_image2model", False):
        return
    original = MultiPartParser.sanitize_file_name

    def sanitize_file_name(self, file_name):
        problem = filename_problem(html.unescape(file_name))
        if problem is not None:
            name = display_filename(file_name)
            raise UploadRefused(
                f"File validation failed: {name}: {problem}",
                details={"errors": [{"filename": name, "error": problem}]},
            )
        return original(self, file_name)

    sanitize_file_name._image2model = True
    MultiPartParser.sanitize_file_name = sanitize_file_name
