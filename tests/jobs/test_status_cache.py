"""Batch status bodies remembered per process under the batch's status version (decision 0025).

Real PostgreSQL, Redis and worker. The suite's autouse fixture checks every remembered body
against a fresh read; tests that count queries turn that check off.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import trimesh
from django.core.cache import cache
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.jobs import pipeline, services, status_cache
from apps.jobs.events import job_change
from apps.jobs.models import Job
from apps.jobs.providers.base import Output
from apps.uploads.models import Batch
from tests.conftest import sample, wait_for_jobs

pytestmark = pytest.mark.django_db(transaction=True)


def upload(client, names) -> str:
    response = client.post("/api/v1/upload/", {"files": [sample(n) for n in names]})
    assert response.status_code == 200, response.content
    return response.json()["task_id"]


def status(client, batch_id) -> dict:
    response = client.get(f"/api/v1/status/tasks/{batch_id}/status")
    assert response.status_code == 200, response.content
    return response.json()


def status_queries(client, batch_id) -> tuple[dict, list[str]]:
    with CaptureQueriesContext(connection) as queries:
        body = status(client, batch_id)
    return body, [q["sql"] for q in queries.captured_queries]


def batch_reads(queries: list[str]) -> int:
    return sum(1 for sql in queries if "uploads_batch" in sql and sql.startswith("SELECT"))


@pytest.fixture
def unchecked(monkeypatch):
    """Remembered bodies served as in production (not compared with a fresh read)."""
    monkeypatch.setattr(status_cache, "VERIFY", False)


def test_a_repeated_read_is_answered_from_memory_until_the_batch_changes(
    alice_api, broker, unchecked
):
    batch_id = upload(alice_api, ["coffee.png"])
    first, queries = status_queries(alice_api, batch_id)
    assert batch_reads(queries) == 1
    again, queries = status_queries(alice_api, batch_id)
    assert batch_reads(queries) == 0
    assert {**again, "timestamp": None} == {**first, "timestamp": None}
    assert again["timestamp"] >= first["timestamp"]  # made for each answer

    job = Job.objects.get(batch_id=batch_id)
    job_change(job.pk, changes={"progress": 40, "message": "Half way"}, event_type="progress")
    changed, queries = status_queries(alice_api, batch_id)
    assert batch_reads(queries) == 1
    assert changed["files"][0]["progress"] == 40
    assert changed["files"][0]["message"] == "Half way"


def test_a_finished_batch_shows_its_models_and_their_expiry(alice_api, broker, worker):
    batch_id = upload(alice_api, ["coffee.png", "chelsea.png"])
    status(alice_api, batch_id)  # remembered while queued
    wait_for_jobs(broker, worker)
    done = status(alice_api, batch_id)
    assert done["status"] == "completed"
    assert all(entry["download_url"] for entry in done["files"])

    job_ids = list(Job.objects.filter(batch_id=batch_id).values_list("id", flat=True))
    services.jobs_files_delete(job_ids=job_ids[:1])
    after = status(alice_api, batch_id)
    urls = {entry["job_id"]: entry["download_url"] for entry in after["files"]}
    assert urls[str(job_ids[0])] is None
    assert urls[str(job_ids[1])] is not None


def test_old_outputs_expired_by_cleanup_are_no_longer_shown(alice_api, broker, worker):
    batch_id = upload(alice_api, ["coffee.png"])
    wait_for_jobs(broker, worker)
    assert status(alice_api, batch_id)["files"][0]["download_url"]
    # Finished nine days ago (not shown in the status, so no bump is owed).
    Job.objects.filter(batch_id=batch_id).update(finished_at=timezone.now() - timedelta(days=9))
    assert status(alice_api, batch_id)["files"][0]["download_url"]
    assert services.files_cleanup(older_than=timedelta(days=1))["jobs"] == 1
    assert status(alice_api, batch_id)["files"][0]["download_url"] is None


def test_admin_saves_and_deletes_are_seen(alice_api, broker):
    batch_id = upload(alice_api, ["coffee.png", "chelsea.png"])
    status(alice_api, batch_id)
    job = Job.objects.filter(batch_id=batch_id).first()
    job.message = "Edited in the admin"
    job.save()
    messages = [entry["message"] for entry in status(alice_api, batch_id)["files"]]
    assert "Edited in the admin" in messages

    job.delete()
    assert status(alice_api, batch_id)["total_files"] == 1

    Batch.objects.get(pk=batch_id).delete()
    response = alice_api.get(f"/api/v1/status/tasks/{batch_id}/status")
    assert response.status_code == 404


def test_another_owner_gets_404_while_the_owner_s_body_is_remembered(
    alice_api, bob_api, broker, unchecked
):
    batch_id = upload(alice_api, ["coffee.png"])
    status(alice_api, batch_id)
    status(alice_api, batch_id)
    response = bob_api.get(f"/api/v1/status/tasks/{batch_id}/status")
    assert response.status_code == 404
    assert response.json()["message"] == "Task not found"


def test_a_lost_version_is_made_again_and_the_database_read(alice_api, broker, unchecked):
    batch_id = upload(alice_api, ["coffee.png"])
    status(alice_api, batch_id)
    key = f"jobs:batch-status:{batch_id}"  # cache.get adds the prefix
    before = cache.get(key)
    cache.delete(key)  # as after a Redis restart
    body, queries = status_queries(alice_api, batch_id)
    assert batch_reads(queries) == 1
    assert body["task_id"] == batch_id
    assert cache.get(key) not in (None, before)
    assert batch_reads(status_queries(alice_api, batch_id)[1]) == 0


def test_a_remembered_body_is_read_again_after_its_max_age(
    alice_api, broker, unchecked, monkeypatch
):
    batch_id = upload(alice_api, ["coffee.png"])
    status(alice_api, batch_id)
    monkeypatch.setattr(status_cache.remembered, "max_age", 0.0)
    assert batch_reads(status_queries(alice_api, batch_id)[1]) == 1


def test_without_redis_every_read_goes_to_the_database(alice_api, broker, unchecked, settings):
    batch_id = upload(alice_api, ["coffee.png"])
    status(alice_api, batch_id)
    settings.CACHES = {
        "default": {
            "BACKEND": "apps.core.cache.SharedPoolRedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",  # nothing listens: refused at once
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        }
    }
    for _ in range(2):
        body, queries = status_queries(alice_api, batch_id)
        assert batch_reads(queries) == 1
        assert body["task_id"] == batch_id


def test_a_read_inside_a_transaction_neither_uses_nor_keeps_a_body(alice_api, broker, unchecked):
    batch_id = upload(alice_api, ["coffee.png"])
    job = Job.objects.get(batch_id=batch_id)
    with transaction.atomic():
        job_change(job.pk, changes={"progress": 70}, event_type="progress")
        # Not committed, so not bumped yet: this read must see its own transaction's change.
        assert status(alice_api, batch_id)["files"][0]["progress"] == 70
        assert batch_reads(status_queries(alice_api, batch_id)[1]) == 1
    assert batch_reads(status_queries(alice_api, batch_id)[1]) == 1  # first read outside
    assert batch_reads(status_queries(alice_api, batch_id)[1]) == 0


def test_outputs_stored_after_the_job_stopped_running_are_shown(alice_api, broker):
    # A worker that lost its job (reaped while it stalled) still records the outputs it stored.
    batch_id = upload(alice_api, ["coffee.png"])
    job = Job.objects.select_related("source_image").get(batch_id=batch_id)
    pipeline.job_fail(job.pk, code="WORKER_LOST", message="The worker running this job stopped.")
    assert status(alice_api, batch_id)["files"][0]["download_url"] is None
    glb = trimesh.creation.box().export(file_type="glb")
    output = Output(kind="model", format="glb", content_type="model/gltf-binary", data=glb)
    pipeline._store_outputs(job, [output])
    entry = status(alice_api, batch_id)["files"][0]
    assert entry["status"] == "failed"
    assert entry["download_url"] == f"/api/v1/download/{batch_id}/coffee.glb"


def test_status_cache_off_reads_every_time_and_writers_still_bump(alice_api, broker, settings):
    settings.STATUS_CACHE = False
    batch_id = upload(alice_api, ["coffee.png"])
    for _ in range(2):
        assert batch_reads(status_queries(alice_api, batch_id)[1]) == 1
    key = f"jobs:batch-status:{batch_id}"  # cache.get adds the prefix
    before = cache.get(key)
    job_change(Job.objects.get(batch_id=batch_id).pk, changes={"progress": 10})
    assert cache.get(key) not in (None, before)  # a process with it on reads again
