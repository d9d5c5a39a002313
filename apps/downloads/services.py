"""Writes and link-making of the downloads app: its public API.

Signed links carry the artifact id and a timestamp, signed with SECRET_KEY; they work without
any header until they expire, so a browser or an old client can fetch the file directly.
"""

from __future__ import annotations

from apps.jobs.selectors import LinkExpired, artifact_link_sign, artifact_link_verify

__all__ = ["LinkExpired", "download_link_sign", "download_link_verify"]

# The jobs app signs links to its outputs (API v2 shows them); these names stay for callers.
download_link_sign = artifact_link_sign
download_link_verify = artifact_link_verify
