"""Authentication for the API: a Bearer API key, or the signed-in session (with CSRF)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja.security import HttpBearer
from ninja.utils import check_csrf

from apps.accounts import selectors, services
from apps.core.errors import NotAuthenticated


class ApiKeyOrSession(HttpBearer):
    """Bearer ``i2m_…`` key (scheme case-insensitive), else a session user.

    Failures raise :class:`NotAuthenticated` (403, the old service's messages) instead of
    returning None, so the client learns why: missing, invalid, expired or revoked.
    """

    def __call__(self, request: HttpRequest) -> Any:
        header = request.headers.get("Authorization")
        if header:
            scheme, _, token = header.strip().partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise NotAuthenticated("Not authenticated")
            return self.authenticate(request, token.strip())
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            if request.method not in {"GET", "HEAD", "OPTIONS"} and check_csrf(request):
                raise NotAuthenticated("CSRF check failed")
            request.api_key = None
            request.owner = user
            return user
        raise NotAuthenticated("Not authenticated")

    def authenticate(self, request: HttpRequest, token: str) -> Any:
        api_key = selectors.api_key_authenticate(token)
        services.api_key_touch(api_key=api_key)
        request.api_key = api_key
        request.owner = api_key.owner
        return api_key
