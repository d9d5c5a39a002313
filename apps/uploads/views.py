"""An uploaded original for its owner (thumbnails in pages) and for staff (admin thumbnails)."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.files.storage import default_storage
from django.http import FileResponse, Http404, HttpRequest

from apps.uploads import selectors


@login_required
def source_image(request: HttpRequest, image_id) -> FileResponse:
    image = selectors.source_image_get_for_viewer(image_id=image_id, user=request.user)
    if image is None:
        raise Http404("No such image")
    response = FileResponse(
        default_storage.open(image.file.name, "rb"), content_type=image.content_type
    )
    response["Cache-Control"] = "private, max-age=86400"
    response["X-Content-Type-Options"] = "nosniff"
    return response
