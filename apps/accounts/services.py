"""Writes of the accounts app: its public write API."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.accounts.keys import STREAM_TOKEN_SALT, key_generate
from apps.accounts.models import ApiKey
from apps.core.errors import ServiceError

__all__ = [
    "KeyLimitReached",
    "api_key_create",
    "api_key_revoke",
    "api_key_rotate",
    "api_key_touch",
    "login_attempt_limited",
    "stream_token_sign",
]

DEFAULT_SCOPES = [ApiKey.Scope.GENERATE, ApiKey.Scope.READ]


class KeyLimitReached(ServiceError):
    status_code = 409
    error_code = "KEY_LIMIT_REACHED"


LAST_USED_RESOLUTION = timedelta(minutes=1)


@transaction.atomic
def api_key_create(
    *,
    owner,
    name: str,
    scopes: list[str] | None = None,
    expires_at: datetime | None = None,
    rate_limit_per_minute: int | None = None,
    enforce_limit: bool = True,
) -> tuple[ApiKey, str]:
    """Create a key; returns the row and the full secret key, which is never stored.

    A user creating their own keys holds at most API_KEYS_PER_USER that still work (revoked and
    expired ones do not count), so a stolen session cannot mint keys without end. Operators
    (admin, commands) and rotations pass ``enforce_limit=False``.
    """
    from django.contrib.auth import get_user_model

    if not enforce_limit:
        working = 0
    else:
        # Lock the owner's row: two creations at once cannot both pass the count.
        get_user_model().objects.select_for_update().filter(pk=owner.pk).first()
        now = timezone.now()
        working = (
            ApiKey.objects.filter(owner=owner)
            .exclude(revoked_at__lte=now)
            .exclude(expires_at__lte=now)
            .count()
        )
    if working >= settings.API_KEYS_PER_USER:
        raise KeyLimitReached(
            f"You already have {working} working API keys, the most allowed "
            f"({settings.API_KEYS_PER_USER}). Revoke one you no longer use first."
        )
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
    """Issue a successor key; the old one keeps working for ``grace``, then stops.

    A key in its grace period has a successor already: rotating it again would issue a second
    successor and push its own end further out, so it is refused (rotate the successor).
    """
    if api_key.revoked_at is not None and api_key.revoked_at <= timezone.now():
        raise ValueError("A revoked key cannot be rotated.")
    if api_key.revoked_at is not None:
        raise ValueError("This key was rotated already and stops soon; rotate its successor.")
    new_key, secret = api_key_create(
        owner=api_key.owner,
        name=api_key.name,
        scopes=list(api_key.scopes),
        expires_at=api_key.expires_at,
        rate_limit_per_minute=api_key.rate_limit_per_minute,
        enforce_limit=False,  # the old key stops after the grace period
    )
    new_key.rotated_from = api_key
    new_key.save(update_fields=["rotated_from", "updated_at"])
    api_key.revoked_at = timezone.now() + grace
    api_key.save(update_fields=["revoked_at", "updated_at"])
    return new_key, secret


def login_attempt_limited(request) -> bool:
    """Count a sign-in attempt; True once its IP or its user name has made too many.

    Per IP (RATE_LIMIT_LOGIN_IP) against guessing many accounts from one place, and per user
    name (RATE_LIMIT_LOGIN_USER) against guessing one account from many places. On the shared
    cache, so the limits hold across web processes.
    """
    from django_ratelimit.core import is_ratelimited

    from apps.accounts.limits import client_ip

    if request.method != "POST":
        return False
    by_ip = is_ratelimited(
        request,
        group="login-ip",
        key=lambda group, req: client_ip(req),
        rate=settings.RATE_LIMIT_LOGIN_IP,
        increment=True,
    )
    by_user = is_ratelimited(
        request,
        group="login-user",
        key=lambda group, req: (req.POST.get("username") or "").strip().lower()[:150],
        rate=settings.RATE_LIMIT_LOGIN_USER,
        increment=True,
    )
    return by_ip or by_user
