from __future__ import annotations

from types import SimpleNamespace

import pytest

from apps.jobs.presenters import v1_batch_status
from apps.jobs.selectors import batch_summary


def jobs(*statuses, progress=None):
    return [
        SimpleNamespace(
            status=s, progress=progress, is_terminal=s in {"succeeded", "failed", "canceled"}
        )
        for s in statuses
    ]


@pytest.mark.parametrize(
    ("statuses", "derived", "v1"),
    [
        (("queued", "queued"), "queued", "queued"),
        (("queued", "running"), "processing", "processing"),
        (("succeeded", "running"), "processing", "processing"),
        (("succeeded", "succeeded"), "completed", "completed"),
        (("succeeded", "failed"), "partially_completed", "completed"),
        (("failed", "failed"), "failed", "failed"),
        (("failed", "canceled"), "failed", "failed"),
        (("canceled", "canceled"), "canceled", "cancelled"),
    ],
)
def test_batch_status_is_derived_from_its_jobs(statuses, derived, v1):
    summary = batch_summary(jobs(*statuses))
    assert summary.status == derived
    assert v1_batch_status(summary) == v1


def test_batch_progress_counts_finished_jobs_as_whole():
    summary = batch_summary(jobs("succeeded", "running", progress=50))
    assert summary.progress == 75
