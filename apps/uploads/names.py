"""Client file names: kept for display and output names, never used as paths."""

from __future__ import annotations

import re
import unicodedata

MAX_NAME_LENGTH = 200
MAX_STEM_LENGTH = 100
_UNSAFE_STEM = re.compile(r"[^\w.\- ()\[\]+,&@']+", re.UNICODE)


def filename_problem(raw: str) -> str | None:
    """Why a client's file name is refused (path tricks, control characters), or None."""
    if not raw or not raw.strip():
        return "a file name is required"
    if any(unicodedata.category(char) in {"Cc", "Cf"} for char in raw):
        return "file name contains control characters"
    if "/" in raw or "\\" in raw or raw.strip() in {".", ".."}:
        return "file name must not contain path separators"
    return None


def display_filename(raw: str) -> str:
    """A printable form of any client name, for messages about it (never for paths)."""
    cleaned = "".join(
        char if unicodedata.category(char) not in {"Cc", "Cf"} else "?" for char in raw or ""
    )
    cleaned = unicodedata.normalize("NFC", cleaned).strip()
    return (cleaned or "unnamed")[:MAX_NAME_LENGTH]


def output_stem(filename: str) -> str:
    """``chair.jpg`` → ``chair``; characters awkward in download names become ``_``."""
    stem = filename.rsplit(".", 1)[0] if "." in filename.lstrip(".") else filename
    stem = _UNSAFE_STEM.sub("_", stem).strip(" ._") or "model"
    return stem[:MAX_STEM_LENGTH]


def unique_stems(stems: list[str]) -> list[str]:
    """Make stems unique within a batch: chair, chair-2, chair-3 (case-insensitively)."""
    taken: set[str] = set()
    result = []
    for stem in stems:
        candidate, counter = stem, 1
        while candidate.lower() in taken:
            counter += 1
            candidate = f"{stem}-{counter}"
        taken.add(candidate.lower())
        result.append(candidate)
    return result
