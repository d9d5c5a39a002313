from __future__ import annotations

import pytest
from django.test import Client

from apps.jobs.models import Job
from apps.jobs.services import batch_submit
from apps.uploads.services import IncomingFile
from tests.conftest import DATA, wait_for_jobs

pytestmark = pytest.mark.django_db(transaction=True)


def submit(owner, names):
    files = [IncomingFile(name, open(DATA / name, "rb")) for name in names]  # noqa: SIM115
    try:
        return batch_submit(owner=owner, files=files)
    finally:
        for incoming in files:
            incoming.stream.close()


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_cancel_ends_every_unfinished_job_of_the_batch(alice, broker):
    batch, _ = submit(alice, ["chelsea.png", "coffee.png"])
    response = signed_in(alice).post(f"/batches/{batch.id}/cancel/", follow=True)
    assert response.status_code == 200
    assert "Canceled 2 unfinished file(s)." in response.content.decode()
    assert set(Job.objects.filter(batch=batch).values_list("status", flat=True)) == {"canceled"}


def test_retry_runs_failed_and_canceled_jobs_again(alice, broker):
    import dramatiq

    from apps.jobs import actors  # noqa: F401

    batch, _ = submit(alice, ["chelsea.png"])
    signed_in(alice).post(f"/batches/{batch.id}/cancel/")
    response = signed_in(alice).post(f"/batches/{batch.id}/retry/", follow=True)
    assert "Retrying 1 file(s)." in response.content.decode()
    worker = dramatiq.Worker(broker, worker_timeout=100, worker_threads=1)  # only now
    worker.start()
    try:
        wait_for_jobs(broker, worker)
    finally:
        worker.stop()
    job = Job.objects.get(batch=batch)
    assert job.status == "succeeded" and job.attempts == 1


def test_someone_else_cannot_cancel_or_retry(alice, bob, broker):
    batch, _ = submit(alice, ["chelsea.png"])
    assert signed_in(bob).post(f"/batches/{batch.id}/cancel/").status_code == 404
    assert signed_in(bob).post(f"/batches/{batch.id}/retry/").status_code == 404
    assert Job.objects.get(batch=batch).status == "queued"


def test_pages_need_a_sign_in(alice, broker):
    batch, jobs = submit(alice, ["chelsea.png"])
    for path in ["/upload/", "/history/", f"/batches/{batch.id}/", f"/jobs/{jobs[0].id}/"]:
        response = Client().get(path)
        assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_history_is_paginated_newest_first(alice, broker):
    batches = [submit(alice, ["chelsea.png"])[0] for _ in range(13)]
    first = signed_in(alice).get("/history/").content.decode()
    assert first.count("history-card") == 12 and "Page 1 of 2" in first
    assert first.index(str(batches[-1].id)) < first.index(str(batches[-2].id))
    second = signed_in(alice).get("/history/?page=2").content.decode()
    assert str(batches[0].id) in second
