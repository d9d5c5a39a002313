"""Keyset (cursor) pagination, newest first, over any model with ``created_at`` and ``id``.

A cursor names the last row of a page: the next page is the rows strictly older than it, in
``(created_at, id)`` order, so rows created meanwhile never shift or repeat a page. Cursors are
signed, and bound to the list and the filters they were made for: a client cannot forge one into
another position, nor carry one over to another list or other filters.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from django.core import signing
from django.db.models import Q, QuerySet

from apps.core.errors import InvalidInput

_SALT = "image2model.core.cursor"


class InvalidCursor(InvalidInput):
    error_code = "INVALID_CURSOR"


def cursor_page(
    queryset: QuerySet, *, cursor: str | None, limit: int, scope: str = ""
) -> tuple[list, str | None]:
    """One page of ``queryset`` (newest first) after ``cursor``, and the next page's cursor.

    ``scope`` names the list and its filters (for example ``"jobs?status=failed"``); a cursor
    made under another scope is refused.
    """
    queryset = queryset.order_by("-created_at", "-id")
    scope_hash = hashlib.sha256(scope.encode()).hexdigest()[:16]
    if cursor:
        created_at, last_id = _decode(cursor, scope_hash)
        queryset = queryset.filter(
            Q(created_at__lt=created_at) | Q(created_at=created_at, id__lt=last_id)
        )
    rows = list(queryset[: limit + 1])
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    last = rows[-1]
    token = signing.dumps([scope_hash, last.created_at.isoformat(), str(last.id)], salt=_SALT)
    return rows, token


def _decode(cursor: str, scope_hash: str) -> tuple[datetime, str]:
    try:
        made_for, created_at, last_id = signing.loads(cursor, salt=_SALT)
        parsed = datetime.fromisoformat(created_at), str(last_id)
    except (signing.BadSignature, ValueError, TypeError):
        raise InvalidCursor("The cursor is not one this API gave out.") from None
    if made_for != scope_hash:
        raise InvalidCursor(
            "The cursor belongs to another list or other filters; start again without it."
        )
    return parsed
