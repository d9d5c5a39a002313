"""The key format: ``i2m_<prefix>_<secret>``. The prefix finds the row, the secret proves it."""

from __future__ import annotations

import hashlib
import hmac
import secrets

KEY_TAG = "i2m"
STREAM_TOKEN_SALT = "image2model.accounts.stream-token"  # noqa: S105  a salt, not a secret


def key_generate() -> tuple[str, str, str]:
    """A new key: (full key shown once, prefix stored, sha256 of the secret stored)."""
    prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    return f"{KEY_TAG}_{prefix}_{secret}", prefix, secret_hash(secret)


def secret_hash(secret: str) -> str:
    # The secret is 256 random bits, so a fast hash is enough: nothing to brute-force.
    return hashlib.sha256(secret.encode()).hexdigest()


def key_split(key: str) -> tuple[str, str] | None:
    """(prefix, secret) of a well-formed key, else None."""
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_TAG or not parts[1] or not parts[2]:
        return None
    return parts[1], parts[2]


def secret_matches(secret: str, stored_hash: str) -> bool:
    return hmac.compare_digest(secret_hash(secret), stored_hash)
