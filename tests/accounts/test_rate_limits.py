from __future__ import annotations

import random
import time

import pytest
from django.test import Client
from django_ratelimit.core import _get_window

from apps.accounts.services import api_key_create
from tests.conftest import sample

pytestmark = pytest.mark.django_db

STATUS = "/api/v1/status/tasks/00000000-0000-0000-0000-000000000000/status"


@pytest.fixture
def small_limits(settings):
    # Hourly windows: a minute's fixed window could end between a test's requests.
    settings.RATE_LIMIT_UPLOADS = "2/h"
    settings.RATE_LIMIT_READS = "3/h"
    settings.RATE_LIMIT_ANONYMOUS = "2/h"


def upload(client):
    return client.post("/api/v1/upload/", {"files": [sample("chelsea.png")]})


def test_uploads_past_the_limit_get_429_with_headers(alice_api, small_limits, broker):
    first = upload(alice_api)
    assert first.status_code == 200
    assert first["RateLimit-Limit"] == "2" and first["RateLimit-Remaining"] == "1"
    assert 0 <= int(first["RateLimit-Reset"]) <= 3600
    assert upload(alice_api)["RateLimit-Remaining"] == "0"
    limited = upload(alice_api)
    assert limited.status_code == 429
    body = limited.json()
    assert body["error"] is True and body["message"] == "Rate limit exceeded"
    assert body["status_code"] == 429
    assert 1 <= int(limited["Retry-After"]) <= 3600
    assert limited["RateLimit-Remaining"] == "0"


def test_reads_and_uploads_are_counted_apart(alice_api, small_limits, broker):
    upload(alice_api)
    upload(alice_api)
    assert upload(alice_api).status_code == 429
    reads = [alice_api.get(STATUS) for _ in range(4)]
    assert [r.status_code for r in reads] == [404, 404, 404, 429]
    assert reads[0]["RateLimit-Limit"] == "3"


def test_each_key_has_its_own_budget_and_may_have_its_own_limit(
    alice, bob_api, small_limits, broker
):
    key, generous = api_key_create(owner=alice, name="batch", rate_limit_per_minute=5)
    # A per-minute limit has a fixed window of a minute: start the six uploads in one.
    left = _get_window(f"key:{key.pk}", 60) - time.time()
    if left < 15:
        time.sleep(left + 0.5)
    client = Client(HTTP_AUTHORIZATION=f"Bearer {generous}")
    assert [upload(client).status_code for _ in range(6)] == [200] * 5 + [429]
    assert upload(bob_api).status_code == 200  # bob's budget is untouched


def test_anonymous_calls_are_limited_per_ip(small_limits):
    # Addresses unique to this run: the counters live in Redis beyond one test.
    first, second = (f"10.{random.randint(0, 255)}.{random.randint(0, 255)}.{n}" for n in (1, 2))
    codes = [
        Client(REMOTE_ADDR=first).get("/api/v1/models/available").status_code for _ in range(3)
    ]
    assert codes == [200, 200, 429]
    assert Client(REMOTE_ADDR=second).get("/api/v1/models/available").status_code == 200
