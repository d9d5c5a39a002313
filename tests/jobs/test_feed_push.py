"""A pushed event folded without reading the log makes exactly what reading the log makes."""

from __future__ import annotations

import pytest

from apps.jobs.events import event_message, job_change
from apps.jobs.models import JobEvent
from apps.jobs.streams import Feed
from tests.conftest import sample

pytestmark = pytest.mark.django_db


def frames(stream_events):
    """Stream events without their timestamps (made when folded)."""
    out = []
    for event in stream_events:
        data = {k: v for k, v in event.data.items() if k != "timestamp"}
        out.append((event.name, event.id, data))
    return out


@pytest.fixture
def batch(alice_api):
    response = alice_api.post(
        "/api/v1/upload/", {"files": [sample("coffee.png"), sample("horse.png")]}
    )
    assert response.status_code == 200, response.content
    return response.json()["task_id"]


def newest_event(batch_id) -> JobEvent:
    return JobEvent.objects.filter(batch_id=batch_id).order_by("-batch_seq").first()


def job_ids(batch_id) -> list[str]:
    events = JobEvent.objects.filter(batch_id=batch_id, type="created").order_by("batch_seq")
    return [str(event.job_id) for event in events]


def test_the_next_pushed_event_makes_the_frames_the_log_makes(batch):
    pushed, read = Feed(batch_id=batch), Feed(batch_id=batch)
    assert frames(pushed.load()) == frames(read.load())
    first, second = job_ids(batch)
    changes = [
        (first, {"status": "running", "stage": "generating", "progress": 40}),
        (second, {"status": "running", "stage": "generating", "progress": 10}),
        (first, {"status": "succeeded", "stage": "done", "progress": 100}),
        (second, {"status": "failed", "stage": "failed", "error_code": "X"}),
    ]
    for job_id, change in changes:
        job_change(job_id, changes=change)
        from_push = pushed.push(event_message(newest_event(batch)))
        assert from_push is not None
        assert frames(from_push) == frames(read.load())
        assert (pushed.cursor, pushed.done) == (read.cursor, read.done)
    assert pushed.done and from_push[-1].name == "task_completed"


def test_a_job_stream_folds_only_its_own_next_event(batch):
    first, second = job_ids(batch)
    pushed, read = Feed(batch_id=batch, job_id=first), Feed(batch_id=batch, job_id=first)
    pushed.load(), read.load()
    job_change(second, changes={"progress": 5})
    assert pushed.push(event_message(newest_event(batch))) is None  # not this job's event
    job_change(first, changes={"status": "succeeded", "stage": "done", "progress": 100})
    assert frames(pushed.push(event_message(newest_event(batch)))) == frames(read.load())
    assert pushed.done and read.done


def test_a_gap_or_an_old_event_needs_the_log(batch):
    feed = Feed(batch_id=batch)
    first, _ = job_ids(batch)
    assert feed.push({"batch_seq": 3, "payload": {}}) is None  # not loaded yet: read the log
    feed.load()
    job_change(first, changes={"progress": 10})
    skipped = event_message(newest_event(batch))
    job_change(first, changes={"progress": 20})
    latest = event_message(newest_event(batch))
    assert feed.push(latest) is None  # the event before it was never folded
    assert feed.cursor == skipped["batch_seq"] - 1
    assert feed.load()[0].id == str(skipped["batch_seq"])
    assert feed.push(skipped) == []  # already folded from the log
    assert feed.push({"batch_seq": feed.cursor + 1}) is None  # a push without its event
