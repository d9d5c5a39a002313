"""Reads of the accounts app: the public read API for other apps."""

from __future__ import annotations

from django.db import connections

from apps.accounts import key_cache
from apps.accounts.keys import STREAM_TOKEN_SALT, key_split, secret_matches
from apps.accounts.models import ApiKey
from apps.core import rows
from apps.core.errors import NotAuthenticated

__all__ = [
    "api_key_authenticate",
    "api_key_authenticate_remembered",
    "api_key_confirm",
    "api_key_list_for_owner",
    "stream_token_user",
]

# Compared against when the prefix is unknown, so a miss costs the same time as a hit.
_DUMMY_HASH = "0" * 64


def api_key_authenticate(key: str) -> ApiKey:
    """The active key for ``key``; raises NotAuthenticated with a message saying why not."""
    parts = key_split(key.strip())
    if parts is None:
        raise NotAuthenticated("Invalid API key")
    prefix, secret = parts
    api_key = _api_key_with_owner(prefix)
    if not secret_matches(secret, api_key.secret_hash if api_key else _DUMMY_HASH):
        raise NotAuthenticated("Invalid API key")
    refusal = _refusal(api_key)
    if refusal:
        raise NotAuthenticated(refusal)
    return api_key


def _refusal(api_key: ApiKey) -> str | None:
    """Why a key with the right secret may not be used now, or None."""
    if api_key.is_revoked:
        return "API key has been revoked"
    if api_key.is_expired:
        return "API key has expired"
    if not api_key.owner.is_active:
        return "Invalid API key"
    return None


def api_key_authenticate_remembered(key: str) -> tuple[ApiKey, int | None]:
    """``api_key_authenticate`` from this process's memory when it can (decision 0020).

    Returns the key and the auth version it was remembered under, which the caller must
    confirm with ``api_key_confirm`` against the version read after it; ``None`` means the key
    was read from the database just now and needs no confirming. Only a key that passes every
    check (secret, revocation and grace by the clock, expiry, the owner's state) is taken from
    memory; any failure is decided by the database row, as without the memory.
    """
    parts = key_split(key.strip())
    entry = key_cache.recall(parts[0]) if parts is not None else None
    if entry is not None:
        if secret_matches(parts[1], entry.api_key.secret_hash) and not _refusal(entry.api_key):
            return key_cache.fresh_copy(entry.api_key), entry.version
        key_cache.forget(parts[0])
    # Read before the row, so a change after the read shows as a new version.
    version = key_cache.version_current() if parts is not None else None
    api_key = api_key_authenticate(key)
    if version is not None:
        key_cache.remember(api_key, version)
    return key_cache.fresh_copy(api_key), None


def api_key_confirm(key: str, remembered: int, current: int | None) -> ApiKey | None:
    """None when a key remembered under version ``remembered`` still holds at ``current`` (the
    version read after it); else the key read again from the database (or NotAuthenticated)."""
    if current is not None and current == remembered:
        return None
    parts = key_split(key.strip())
    if parts is not None:
        key_cache.forget(parts[0])
    api_key = api_key_authenticate(key)
    if current is not None:  # read before this row, so it may be remembered under it
        key_cache.remember(api_key, current)
    return key_cache.fresh_copy(api_key)


def _api_key_with_owner(prefix: str) -> ApiKey | None:
    """``ApiKey.objects.select_related("owner").filter(prefix=prefix).first()`` (prefixes are
    unique), in SQL written once: this runs on every request with a key (decision 0018)."""
    connection = connections[ApiKey.objects.db]
    owner_model = ApiKey._meta.get_field("owner").related_model
    qn = connection.ops.quote_name
    sql = (
        f"SELECT {rows.columns(ApiKey, 'k', connection)}, "  # noqa: S608  names from the models
        f"{rows.columns(owner_model, 'u', connection)} "
        f"FROM {qn(ApiKey._meta.db_table)} k "
        f"JOIN {qn(owner_model._meta.db_table)} u ON u.{qn('id')} = k.{qn('owner_id')} "
        f"WHERE k.{qn('prefix')} = %s"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [prefix])
        row = cursor.fetchone()
    if row is None:
        return None
    api_key = rows.instance(ApiKey, row, connection)
    owner = rows.instance(owner_model, row, connection, offset=rows.width(ApiKey))
    ApiKey.owner.field.set_cached_value(api_key, owner)
    return api_key


def api_key_list_for_owner(*, owner) -> list[ApiKey]:
    """Keys that still work (including old keys in a rotation's grace time)."""
    from django.db.models import Q
    from django.utils import timezone

    working = Q(revoked_at__isnull=True) | Q(revoked_at__gt=timezone.now())
    return list(ApiKey.objects.filter(working, owner=owner).order_by("-created_at"))


def stream_token_user(token: str, *, resource: str, max_age: int):
    """The active user a stream token was made for, if it is valid for ``resource``."""
    from django.contrib.auth import get_user_model
    from django.core import signing

    try:
        value = signing.TimestampSigner(salt=STREAM_TOKEN_SALT).unsign(token, max_age=max_age)
    except signing.BadSignature:
        return None
    user_id, _, token_resource = value.partition("|")
    if token_resource != resource:
        return None
    return get_user_model().objects.filter(pk=user_id, is_active=True).first()
