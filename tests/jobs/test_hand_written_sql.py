"""The reads and writes in SQL written once (decision 0018) give what the ORM gives."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.test import RequestFactory
from django_ratelimit.core import get_usage

from apps.accounts import limits
from apps.accounts import selectors as account_selectors
from apps.accounts.models import ApiKey
from apps.jobs import pipeline, selectors
from apps.jobs.models import Artifact, Job, JobEvent
from apps.jobs.providers.base import Output
from apps.uploads.models import Batch
from tests.conftest import sample, wait_for_jobs

pytestmark = pytest.mark.django_db(transaction=True)


def fields(instance) -> dict:
    return {k: v for k, v in instance.__dict__.items() if k != "_state"}


def upload(client, names) -> str:
    response = client.post("/api/v1/upload/", {"files": [sample(n) for n in names]})
    assert response.status_code == 200, response.content
    return response.json()["task_id"]


def test_status_reads_match_the_orm(alice, alice_api, alice_key, bob, broker, worker):
    batch_id = upload(alice_api, ["coffee.png", "chelsea.png", "rocket.jpg"])
    wait_for_jobs(broker, worker)
    first = Job.objects.filter(batch_id=batch_id).order_by("source_image__position").first()
    Artifact.objects.filter(job=first, kind="model").update(expired_at="2020-01-01T00:00Z")

    orm_jobs = list(
        Job.objects.filter(batch_id=batch_id)
        .select_related("source_image")
        .order_by("source_image__position", "created_at")
    )
    jobs = selectors.jobs_for_batch(batch_id=batch_id)
    assert [fields(job) for job in jobs] == [fields(job) for job in orm_jobs]
    assert [fields(job.source_image) for job in jobs] == [
        fields(job.source_image) for job in orm_jobs
    ]

    batch, status_jobs, models = selectors.batch_status_for_owner(batch_id=batch_id, owner=alice)
    assert fields(batch) == fields(Batch.objects.get(pk=batch_id))
    assert [job.pk for job in status_jobs] == [job.pk for job in orm_jobs]
    assert [job.source_image.original_filename for job in status_jobs] == [
        job.source_image.original_filename for job in orm_jobs
    ]
    orm_models = {
        artifact.job_id: artifact
        for artifact in Artifact.objects.filter(
            job__batch_id=batch_id, kind="model", expired_at__isnull=True
        ).order_by("format")
    }
    assert first.pk not in models and set(models) == set(orm_models) and len(models) == 2
    for job_id, artifact in models.items():
        # The file is deferred, so django-cleanup's cache of the original file is empty.
        expected = fields(orm_models[job_id])
        expected.pop("file"), expected.pop("_django_cleanup_original_cache")
        got = fields(artifact)
        assert got.pop("_django_cleanup_original_cache") == {}
        assert got == expected
        assert artifact.file.name == orm_models[job_id].file.name  # deferred, read when used

    assert selectors.batch_status_for_owner(batch_id=batch_id, owner=bob) is None
    assert selectors.batch_status_for_owner(batch_id=batch_id, owner=None) is None

    api_key = account_selectors.api_key_authenticate(alice_key)
    orm_key = ApiKey.objects.select_related("owner").get(pk=api_key.pk)
    assert fields(api_key) == fields(orm_key)
    assert fields(api_key.owner) == fields(orm_key.owner)


def test_an_empty_batch_has_a_status(alice, alice_api, broker):
    batch_id = upload(alice_api, ["coffee.png"])
    Job.objects.filter(batch_id=batch_id).delete()
    batch, jobs, models = selectors.batch_status_for_owner(batch_id=batch_id, owner=alice)
    assert str(batch.pk) == batch_id and jobs == [] and models == {}


def test_a_job_change_returns_the_job_as_a_read_gives_it(alice_api, broker):
    batch_id = upload(alice_api, ["coffee.png", "chelsea.png"])
    job = Job.objects.filter(batch_id=batch_id).first()
    claimed = pipeline.job_claim(job.id)
    read = Job.objects.select_related("source_image").get(pk=job.id)
    assert fields(claimed) == fields(read)
    assert fields(claimed.source_image) == fields(read.source_image)
    event = JobEvent.objects.get(job=job, seq=claimed.event_seq)
    assert event.type == "status" and event.payload["status"] == "running"
    assert event.payload["filename"] == read.source_image.original_filename
    assert event.payload["updated_at"] == read.updated_at.isoformat()
    assert list(JobEvent.objects.filter(batch_id=batch_id).values_list("batch_seq", flat=True)) == [
        1,
        2,
        3,
    ]
    assert pipeline.job_claim(job.id) is None  # only_if no longer matches: nothing written
    assert JobEvent.objects.filter(batch_id=batch_id).count() == 3


def test_artifacts_commit_with_success_and_without_it_too(alice_api, broker):
    batch_id = upload(alice_api, ["coffee.png", "chelsea.png"])
    first, second = [pipeline.job_claim(job.id) for job in Job.objects.filter(batch_id=batch_id)]
    output = Output(kind="model", format="glb", content_type="model/gltf-binary", data=b"glb")
    pipeline._store_outputs(first, [output])
    assert Job.objects.get(pk=first.pk).status == Job.Status.SUCCEEDED
    assert Artifact.objects.filter(job=first).count() == 1
    # A job that stopped running while storing keeps its rows (its files stay known).
    Job.objects.filter(pk=second.pk).update(status=Job.Status.CANCELED)
    pipeline._store_outputs(second, [output])
    assert Job.objects.get(pk=second.pk).status == Job.Status.CANCELED
    assert Artifact.objects.filter(job=second).count() == 1


def test_the_rate_limit_counter_is_django_ratelimits(alice_key):
    api_key = account_selectors.api_key_authenticate(alice_key)
    request = RequestFactory().get("/")
    request.api_key, request.owner = api_key, api_key.owner
    group = "api-hand-written-sql"
    usages = [
        get_usage(request, group=group, key=limits._identity, rate="5/h", increment=True),
        limits._usage(request, group, "5/h"),
        get_usage(request, group=group, key=limits._identity, rate="5/h", increment=True),
        limits._usage(request, group, "5/h"),
    ]
    assert [usage["count"] for usage in usages] == [1, 2, 3, 4]
    assert all(usage["limit"] == 5 and not usage["should_limit"] for usage in usages)
    assert limits._usage(request, group, "5/h")["count"] == 5
    assert limits._usage(request, group, "5/h")["should_limit"]


def test_a_counter_made_by_the_script_expires_and_reads_the_other_key(settings):
    if not hasattr(cache, "incr_in_window_and_get"):
        pytest.skip("the Redis cache only")
    key, other = "rl:hand-written-sql-ttl", "rl:hand-written-sql-other"
    cache.delete(other)
    assert cache.incr_in_window_and_get(key, 30, other) == (1, None)
    cache.set(other, 4242, timeout=None)
    assert [cache.incr_in_window_and_get(key, 30, other) for _ in range(2)] == [
        (2, 4242),
        (3, 4242),
    ]
    cache.set(other, "not a number")
    assert cache.incr_in_window_and_get(key, 30, other) == (4, None)
    client = cache._cache.get_client(write=True)
    assert 0 < client.ttl(cache.make_key(key)) <= 30
    assert cache.get(key) == 4  # the counter django-ratelimit reads
    cache.delete(key)
    cache.delete(other)
