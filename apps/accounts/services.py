"""Writes of the accounts app: its public write API."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from apps.accounts.keys import STREAM_TOKEN_SALT, key_generate
from apps.accounts.models import ApiKey

__all__ = [
    "api_key_create",
    "api_key_revoke",
    "api_key_rotate",
    "api_key_touch",
    "stream_token_sign",
]

DEFAULT_SCOPES = [ApiKey.Scope.GENERATE, ApiKey.Scope.READ]
LAST_USED_RESOLUTION = timedelta(minutes=1)


@transaction.atomic
def api_key_create(
    *,
    owner,
    name: str,
    scopes: list[str] | None = None,
    expires_at: datetime | None = None,
    rate_limit_per_minute: int | None = None,
) -> tuple[ApiKey, str]:
    """Create a key; returns the row and the full secret key, which is never stored."""
    full_key, prefix, secret_hash = key_generate()
    api_key = ApiKey.objects.create(
        owner=owner,
        name=name,
        prefix=prefix,
        secret_hash=secret_hash,
        scopes=[str(scope) for scope in (scopes or DEFAULT_SCOPES)],
        expires_at=expires_at,
        rate_limit_per_minute=rate_limit_per_minute,
    )
    return api_key, full_key


def api_key_touch(*, api_key: ApiKey) -> None:
    """Record use, at most once a minute per key, so busy keys do not write on every request."""
    now = timezone.now()
    if api_key.last_used_at and now - api_key.last_used_at < LAST_USED_RESOLUTION:
        return
    ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
    api_key.last_used_at = now


def api_key_revoke(*, api_key: ApiKey) -> ApiKey:
    """Revoke a key now; it stops working at once."""
    now = timezone.now()
    if api_key.revoked_at is None or api_key.revoked_at > now:  # also ends a rotation's grace
        api_key.revoked_at = now
        api_key.save(update_fields=["revoked_at", "updated_at"])
    return api_key


def stream_token_sign(*, user_id: int, resource: str) -> str:
    """A short-lived token letting a browser EventSource or WebSocket read one resource."""
    from django.core import signing

    return signing.TimestampSigner(salt=STREAM_TOKEN_SALT).sign(f"{user_id}|{resource}")


@transaction.atomic
def api_key_rotate(*, api_key: ApiKey, grace: timedelta) -> tuple[ApiKey, str]:
    """Issue a successor key; the old one keeps working for ``grace``, then stops."""
    if api_key.revoked_at is not None and api_key.revoked_at <= timezone.now():
        raise ValueError("A revoked key cannot be rotated.")
    new_key, secret = api_key_create(
        owner=api_key.owner,
        name=api_key.name,
        scopes=list(api_key.scopes),
        expires_at=api_key.expires_at,
        rate_limit_per_minute=api_key.rate_limit_per_minute,
    )
    new_key.rotated_from = api_key
    new_key.save(update_fields=["rotated_from", "updated_at"])
    api_key.revoked_at = timezone.now() + grace
    api_key.save(update_fields=["revoked_at", "updated_at"])
    return new_key, secret
