"""Writes and link-making of the downloads app: its public API.

Signed links carry the artifact id and a timestamp, signed with SECRET_KEY; they work without
any header until they expire, so a browser or an old client can fetch the file directly.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.core import signing

from apps.core.errors import NotFound, ServiceError

__all__ = ["LinkExpired", "download_link_sign", "download_link_verify"]

_SALT = "image2model.downloads.artifact"


class LinkExpired(ServiceError):
    status_code = 410
    error_code = "LINK_EXPIRED"


def download_link_sign(artifact_id) -> str:
    """A token for ``/api/v1/download/direct/<token>``."""
    return signing.TimestampSigner(salt=_SALT).sign(str(artifact_id))


def download_link_verify(token: str) -> uuid.UUID:
    """The artifact id of a valid, unexpired token; NotFound or LinkExpired otherwise."""
    signer = signing.TimestampSigner(salt=_SALT)
    try:
        value = signer.unsign(token, max_age=settings.DOWNLOAD_LINK_MAX_AGE_SECONDS)
        return uuid.UUID(value)
    except signing.SignatureExpired:
        raise LinkExpired("Download link has expired; ask for a new one.") from None
    except (signing.BadSignature, ValueError):
        raise NotFound("Download link is invalid") from None
