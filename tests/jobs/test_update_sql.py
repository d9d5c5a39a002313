"""Job changes run SQL kept per shape of the change (decision 0021), with the ORM's results."""

from __future__ import annotations

import pytest
from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone

from apps.jobs import events, pipeline
from apps.jobs.models import Job
from tests.conftest import sample

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def fresh_cache(monkeypatch):
    """An empty cache of kept SQL, restored afterwards (other tests keep theirs)."""
    monkeypatch.setattr(events, "_update_sql", {})
    return events._update_sql


def jobs_of(client, names) -> list[Job]:
    response = client.post("/api/v1/upload/", {"files": [sample(n) for n in names]})
    assert response.status_code == 200, response.content
    return list(Job.objects.filter(batch_id=response.json()["task_id"]).order_by("created_at"))


def test_a_job_run_keeps_one_statement_per_shape_and_reuses_it(alice_api, broker, fresh_cache):
    first, second = jobs_of(alice_api, ["coffee.png", "chelsea.png"])
    pipeline.job_claim(first.id)
    assert len(fresh_cache) == 1 and None not in fresh_cache.values()
    # The second claim is the same shape: the kept SQL runs (checked against the ORM's).
    claimed = pipeline.job_claim(second.id)
    assert len(fresh_cache) == 1
    assert claimed.status == Job.Status.RUNNING and claimed.attempts == 1
    finished = pipeline.job_finish(second.id, status=Job.Status.SUCCEEDED, message="Model ready")
    assert len(fresh_cache) == 2
    row = Job.objects.get(pk=second.id)
    assert (row.status, row.progress, row.stage, row.queue_position) == (
        "succeeded",
        100,
        "done",
        None,
    )
    assert finished.finished_at == row.finished_at and row.event_seq == 3


def test_booleans_and_nulls_are_part_of_the_shape(alice_api, broker, fresh_cache, monkeypatch):
    monkeypatch.setattr(events, "VERIFY_UPDATE_SQL", False)  # the kept SQL alone decides
    job, other = jobs_of(alice_api, ["coffee.png", "chelsea.png"])
    wanted = Q(status=Job.Status.QUEUED, cancel_requested=False)
    assert events.job_change(job.id, changes={"message": "a"}, only_if=wanted) is not None
    Job.objects.filter(pk=other.id).update(cancel_requested=True)
    # "cancel_requested" and "NOT cancel_requested" differ in SQL, not in a parameter.
    assert events.job_change(other.id, changes={"message": "b"}, only_if=wanted) is None
    flagged = Q(status=Job.Status.QUEUED, cancel_requested=True)
    assert events.job_change(other.id, changes={"message": "c"}, only_if=flagged) is not None
    # "= NULL" is SQL too: a None after a value of the same column is another shape.
    events.job_change(job.id, changes={"queue_position": 3})
    events.job_change(job.id, changes={"queue_position": None})
    assert Job.objects.get(pk=job.id).queue_position is None
    assert Job.objects.get(pk=other.id).message == "c"
    assert len(fresh_cache) == 4 and None not in fresh_cache.values()


def test_a_shape_whose_parameters_differ_is_always_compiled(
    alice_api, broker, fresh_cache, monkeypatch, caplog
):
    monkeypatch.setattr(events, "VERIFY_UPDATE_SQL", False)
    first, second = jobs_of(alice_api, ["coffee.png", "chelsea.png"])
    real = events._update_params
    monkeypatch.setattr(events, "_update_params", lambda *args: [*real(*args), "surplus"])
    pipeline.job_claim(first.id)
    assert list(fresh_cache.values()) == [None]
    assert "compiled every time" in caplog.text
    claimed = pipeline.job_claim(second.id)  # the ORM's own SQL and parameters
    assert claimed.status == Job.Status.RUNNING
    assert Job.objects.get(pk=second.id).status == Job.Status.RUNNING


def test_the_suite_check_fails_on_a_difference(alice_api, broker, fresh_cache, monkeypatch):
    (job,) = jobs_of(alice_api, ["coffee.png"])
    real = events._update_params
    monkeypatch.setattr(events, "_update_params", lambda *args: real(*args)[::-1])
    with pytest.raises(AssertionError, match="job update SQL"):
        pipeline.job_claim(job.id)
    assert Job.objects.get(pk=job.id).status == Job.Status.QUEUED  # nothing was written


def test_a_change_it_does_not_rebuild_goes_to_the_orm(alice_api, broker, fresh_cache):
    (job,) = jobs_of(alice_api, ["coffee.png"])
    changed = events.job_change(job.id, changes={"attempts": F("attempts") * 2 + 5})
    assert changed.attempts == 5 and fresh_cache == {}
    changed = events.job_change(job.id, changes={"message": "x"}, only_if=Q(pk=job.id))
    assert changed.message == "x" and fresh_cache == {}
    stale = timezone.now()
    changed = events.job_change(job.id, changes={"message": "y"}, only_if=Q(heartbeat_at__lt=stale))
    assert changed is None  # heartbeat_at is NULL: no row matches


def test_values_whose_sql_differs_from_their_shape_go_to_the_orm(
    alice_api, broker, fresh_cache, monkeypatch
):
    monkeypatch.setattr(events, "VERIFY_UPDATE_SQL", False)  # the kept SQL alone decides
    (job,) = jobs_of(alice_api, ["coffee.png"])
    events.job_change(job.id, changes={"progress": 1})
    # Django drops a condition whose value is out of the column's range and rounds a float
    # up for lt/gte: the same shape as a plain value, another SQL. Each must match as the ORM.
    conditions = [
        lambda: Q(progress__gte=5),
        lambda: Q(progress__gte=-1),
        lambda: Q(progress__lt=2),
        lambda: Q(progress__lt=1.5),
        lambda: Q(batch=job.batch),
        lambda: Q(Exists(Job.objects.filter(pk=OuterRef("pk"), status=Job.Status.QUEUED))),
        lambda: Q(status__in=(s for s in [Job.Status.QUEUED])),  # a generator is read once
    ]
    for n, condition in enumerate(conditions):
        expected = Job.objects.filter(pk=job.id).filter(condition()).exists()
        changed = events.job_change(job.id, changes={"message": f"m{n}"}, only_if=condition())
        assert (changed is not None) == expected, n
    kept = [shape for shape, sql in fresh_cache.items() if sql is not None]
    # Kept: the plain change, and the two conditions with plain in-range integers.
    assert len(kept) == 3
