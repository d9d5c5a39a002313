"""Authentication for the API: a Bearer API key, or the signed-in session (with CSRF).

Each router says which scope its endpoints need and which rate-limit group they count in.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja.security import HttpBearer
from ninja.utils import check_csrf

from apps.accounts import key_cache, selectors, services
from apps.accounts.limits import rate_limit
from apps.core.errors import Forbidden, NotAuthenticated

SCOPES = ("generate", "read", "admin")


class ApiKeyOrSession(HttpBearer):
    """Bearer ``i2m_…`` key (scheme case-insensitive), else a session user.

    Failures raise :class:`NotAuthenticated` (403, the old service's messages) instead of
    returning None, so the client learns why: missing, invalid, expired, revoked, or a key
    without the scope the endpoint needs.
    """

    def __init__(self, *, scope: str = "read", limit_group: str | None = "read") -> None:
        super().__init__()
        assert scope in SCOPES
        self.scope = scope
        self.limit_group = limit_group

    def __call__(self, request: HttpRequest) -> Any:
        request.auth_version = None
        request.api_key_remembered = None
        principal = self._authenticate(request)
        remembered = request.api_key_remembered
        try:
            if self.limit_group:
                rate_limit(request, self.limit_group)
        finally:
            if remembered is not None:
                # Confirmed against the auth version the rate limit's command just read (one
                # round trip for both); a stale key is read again, and a revoked one answers
                # 401 rather than 429.
                principal = self._confirm(request, *remembered)
        if request.api_key is not None:
            self._authorize(request, request.api_key)
        return principal

    def _authenticate(self, request: HttpRequest) -> Any:
        header = request.headers.get("Authorization")
        if header:
            scheme, _, token = header.strip().partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise NotAuthenticated("Not authenticated")
            return self.authenticate(request, token.strip())
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            if request.method not in {"GET", "HEAD", "OPTIONS"} and check_csrf(request):
                raise Forbidden("CSRF check failed")
            if self.scope == "admin" and not user.is_staff:
                raise Forbidden("This needs a staff account")
            request.api_key = None
            request.owner = user
            return user
        raise NotAuthenticated("Not authenticated")

    def authenticate(self, request: HttpRequest, token: str) -> Any:
        if self.limit_group and key_cache.usable():  # the rate limit reads the version
            api_key, version = selectors.api_key_authenticate_remembered(token)
        else:
            api_key, version = selectors.api_key_authenticate(token), None
        request.api_key_remembered = (token, version) if version is not None else None
        request.api_key = api_key
        request.owner = api_key.owner
        return api_key

    def _confirm(self, request: HttpRequest, token: str, version: int) -> Any:
        current = request.auth_version
        fresh = selectors.api_key_confirm(token, version, current)
        if fresh is not None:
            request.api_key = fresh
            request.owner = fresh.owner
        return request.api_key

    def _authorize(self, request: HttpRequest, api_key: Any) -> None:
        if self.scope not in api_key.scopes:
            raise Forbidden(f"API key lacks the '{self.scope}' scope")
        services.api_key_touch(api_key=api_key)
        key_cache.note_last_used(api_key)


def anonymous_rate_limit(request: HttpRequest) -> None:
    """Count an unauthenticated request against its IP's limit."""
    request.owner = None
    request.api_key = None
    rate_limit(request, "anonymous")
