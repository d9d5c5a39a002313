"""Every change to an API key or a user makes a new auth version (see key_cache).

The version changes at once, so this process and others stop trusting what they remember, and
again when the change commits: a process that read the row in between (the old row, the change
not yet visible) remembered it under the first new version.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models.signals import post_delete, post_save

from apps.accounts import key_cache
from apps.accounts.models import ApiKey

# Saves that change nothing authentication reads (touch and sign-in bookkeeping).
_IGNORED_FIELDS = {"last_used_at", "last_login", "updated_at"}


def auth_rows_changed(sender, instance, using: str = "default", **kwargs) -> None:
    update_fields = kwargs.get("update_fields")
    if update_fields and set(update_fields) <= _IGNORED_FIELDS:
        return
    key_cache.version_bump()
    transaction.on_commit(key_cache.version_bump, using=using)


def connect() -> None:
    for model in (ApiKey, get_user_model()):
        for signal in (post_save, post_delete):
            signal.connect(auth_rows_changed, sender=model, dispatch_uid=f"auth-{model._meta}")
