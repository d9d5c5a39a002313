"""A worker process killed in the middle of a FAL job: the job is taken over by another worker
process when the broker redelivers its message, resumes the same upstream request, and FAL gets
exactly one submit."""

from __future__ import annotations

import signal

import pytest

from apps.jobs.models import Job
from tests.conftest import DATA
from tests.fal_server import FakeFalServer
from tests.servers import kill_group, start_worker, wait_for, worker_env

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def test_a_killed_worker_s_fal_job_resumes_elsewhere_with_one_submit(
    alice, broker, media_root, tmp_path, settings
):
    from apps.jobs.services import batch_submit
    from apps.uploads.services import IncomingFile

    fal = FakeFalServer()
    fal.fal.queue_steps = 0
    fal.fal.progress = list(range(1, 100))  # about ten seconds of progress at 0.1 s a poll
    settings.FAL_KEY = "test-key"
    env = worker_env(fal.base, media_root)
    first = start_worker(env, tmp_path / "first.log")
    second = None
    try:
        with open(DATA / "rocket.jpg", "rb") as stream:
            _, (job,) = batch_submit(
                owner=alice, files=[IncomingFile("rocket.jpg", stream)], generator_id="tripo3d"
            )
        wait_for(
            lambda: Job.objects.filter(pk=job.pk).exclude(upstream_request_id="").exists(),
            60,
            "the first worker to submit",
        )
        wait_for(lambda: fal.fal.requests[fal.fal.submits[0].id].polls > 5, 30, "polling")
        kill_group(first)  # SIGKILL: no cleanup, no ack; the job row still says running
        killed = Job.objects.get(pk=job.pk)
        assert killed.status == "running" and killed.attempts == 1

        second = start_worker(env, tmp_path / "second.log")
        done = wait_for(
            lambda: Job.objects.filter(pk=job.pk, status__in=Job.TERMINAL).first(),
            90,
            "the job to finish on the second worker",
        )
        assert done.status == "succeeded", (done.error_code, done.error_message)
        assert done.attempts == 2
        assert len(fal.fal.submits) == 1  # resumed, not resubmitted
        assert done.upstream_request_id == fal.fal.submits[0].id
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                kill_group(process, signal.SIGTERM)
        fal.stop()
