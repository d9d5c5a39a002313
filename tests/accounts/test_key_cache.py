"""Remembered API keys (decision 0020): a process skips the key's row while the auth version the
rate limit's command reads is the one the key was remembered under, and only then."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.accounts import key_cache
from apps.accounts.auth import ApiKeyOrSession
from apps.accounts.models import ApiKey
from apps.accounts.services import api_key_create, api_key_revoke, api_key_rotate

pytestmark = pytest.mark.django_db

STATUS = "/api/v1/status/tasks/00000000-0000-0000-0000-000000000000/status"
V2_JOBS = "/api/v2/jobs"


@pytest.fixture(autouse=True)
def _redis_cache_only(monkeypatch):
    if not hasattr(key_cache.auth_cache(), "incr_in_window_and_get"):
        pytest.skip("keys are remembered on the Redis cache only")
    # A version of this test's own: another test run on the same Redis must not move it.
    monkeypatch.setattr(key_cache, "VERSION_KEY", f"accounts:auth-version:{uuid.uuid4().hex}")
    key_cache.forget_all()
    yield
    key_cache.auth_cache().delete(key_cache.VERSION_KEY)
    key_cache.forget_all()


@pytest.fixture
def only_the_version(monkeypatch):
    """A change in this process forgets its own memory too; this leaves only the shared version
    to tell the remembered key is stale, as in every other process."""
    monkeypatch.setattr(key_cache, "forget_all", lambda: None)


def call(key: str, path: str = STATUS):
    return Client(HTTP_AUTHORIZATION=f"Bearer {key}").get(path)


def key_reads(key: str, path: str = STATUS) -> tuple[int, int]:
    """(status code, how many SELECTs read the API key table) for one request."""
    with CaptureQueriesContext(connection) as queries:
        response = call(key, path)
    table = ApiKey._meta.db_table
    reads = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("SELECT")]
    return response.status_code, sum(table in sql for sql in reads)


def test_a_remembered_key_is_not_read_again_while_the_version_holds(alice):
    _, secret = api_key_create(owner=alice, name="busy")
    assert key_reads(secret) == (404, 1)  # authenticated; the task is not there
    assert key_reads(secret) == (404, 0)
    assert key_reads(secret, V2_JOBS) == (200, 0)


def test_a_revoked_key_stops_at_once(alice, only_the_version):
    key, secret = api_key_create(owner=alice, name="old")
    assert key_reads(secret) == (404, 1)
    api_key_revoke(api_key=key)
    response = call(secret)
    assert response.status_code == 403
    assert response.json()["message"] == "API key has been revoked"


def test_a_deactivated_owner_and_a_narrowed_key_stop_at_once(alice, bob, only_the_version):
    _, alice_secret = api_key_create(owner=alice, name="a")
    bob_key, bob_secret = api_key_create(owner=bob, name="b")
    assert call(alice_secret).status_code == 404 and call(bob_secret).status_code == 404
    alice.is_active = False
    alice.save()
    assert call(alice_secret).json()["message"] == "Invalid API key"
    bob_key.scopes = ["generate"]
    bob_key.save()
    response = call(bob_secret)
    assert response.status_code == 403
    assert response.json()["message"] == "API key lacks the 'read' scope"


def test_a_change_in_another_process_is_seen_through_the_version(alice):
    key, secret = api_key_create(owner=alice, name="elsewhere")
    assert key_reads(secret) == (404, 1)
    # Another process revokes: the row changes and the shared version moves; this process's
    # memory is untouched (no signal here), only the version it reads tells it.
    ApiKey.objects.filter(pk=key.pk).update(revoked_at=key.created_at)
    key_cache.auth_cache().set(key_cache.VERSION_KEY, 12345, timeout=None)
    assert call(secret).json()["message"] == "API key has been revoked"


def test_without_a_version_every_request_reads_the_key(alice):
    _, secret = api_key_create(owner=alice, name="restart")
    assert key_reads(secret) == (404, 1)
    key_cache.auth_cache().delete(key_cache.VERSION_KEY)  # Redis restarted: the version is gone
    assert key_reads(secret) == (404, 1)
    assert key_reads(secret) == (404, 1)  # remembered under the new version made on the miss
    assert key_reads(secret) == (404, 0)


def test_with_rate_limits_off_nothing_is_remembered(alice, settings):
    settings.RATELIMIT_ENABLE = False
    _, secret = api_key_create(owner=alice, name="unlimited")
    assert [key_reads(secret) for _ in range(3)] == [(404, 1)] * 3


def test_a_wrong_secret_for_a_remembered_prefix_is_refused(alice):
    _, secret = api_key_create(owner=alice, name="guessed")
    assert call(secret).status_code == 404
    forged = secret[:-4] + ("AAAA" if not secret.endswith("AAAA") else "BBBB")
    assert call(forged).json()["message"] == "Invalid API key"
    assert call(secret).status_code == 404


def test_a_grace_period_ends_by_the_clock_for_a_remembered_key(alice):
    old, old_secret = api_key_create(owner=alice, name="ci")
    api_key_rotate(api_key=old, grace=timedelta(seconds=3))
    old.refresh_from_db()
    assert key_reads(old_secret) == (404, 1)
    assert key_reads(old_secret) == (404, 0)  # remembered, inside its grace
    time.sleep(max(0.0, (old.revoked_at - timezone.now()).total_seconds()) + 0.1)
    assert call(old_secret).json()["message"] == "API key has been revoked"


def test_a_change_behind_the_signals_back_lasts_at_most_the_max_age(alice, monkeypatch):
    key, secret = api_key_create(owner=alice, name="shell")
    assert call(secret).status_code == 404
    ApiKey.objects.filter(pk=key.pk).update(revoked_at=key.created_at)  # no signal
    assert call(secret).status_code == 404  # still remembered: the documented bound
    monkeypatch.setattr(key_cache.remembered, "max_age", 0.0)
    assert call(secret).json()["message"] == "API key has been revoked"


def test_bookkeeping_saves_keep_the_version(alice):
    key, secret = api_key_create(owner=alice, name="quiet")
    assert call(secret).status_code == 404
    version = key_cache.version_current()
    alice.save(update_fields=["last_login"])
    key.save(update_fields=["last_used_at"])
    assert key_cache.version_current() == version
    assert key_reads(secret) == (404, 0)
    key.name = "renamed"
    key.save()
    assert key_cache.version_current() != version


def test_requests_get_their_own_copies(alice, rf):
    _, secret = api_key_create(owner=alice, name="copies")
    call(secret)
    auth = ApiKeyOrSession(scope="read", limit_group="read")
    first = auth(rf.get(STATUS, HTTP_AUTHORIZATION=f"Bearer {secret}"))
    second = auth(rf.get(STATUS, HTTP_AUTHORIZATION=f"Bearer {secret}"))
    assert first is not second and first.owner is not second.owner
    first.owner.username = "mallory"
    first.scopes.append("admin")
    remembered = key_cache.recall(secret.split("_")[1]).api_key
    assert remembered.owner.username == "alice" and "admin" not in remembered.scopes
    assert second.owner.username == "alice" and "admin" not in second.scopes


def test_a_revoked_key_past_its_rate_limit_says_revoked(alice, settings, only_the_version):
    settings.RATE_LIMIT_READS = "2/h"  # an hour's window: the calls never straddle two
    key, secret = api_key_create(owner=alice, name="busy")
    assert [call(secret).status_code for _ in range(3)] == [404, 404, 429]
    api_key_revoke(api_key=key)
    response = call(secret)  # counted and over the limit, but the key's state comes first
    assert response.status_code == 403
    assert response.json()["message"] == "API key has been revoked"


def test_a_key_without_the_scope_is_refused_after_it_is_counted(alice, settings):
    settings.RATE_LIMIT_READS = "5/h"
    _, secret = api_key_create(owner=alice, name="writer", scopes=["generate"])
    response = call(secret)
    assert response.status_code == 403
    assert response.json()["message"] == "API key lacks the 'read' scope"
    assert response["RateLimit-Remaining"] == "4"
