"""A worker process killed in the middle of a FAL job: the job is taken over by another worker
process when the broker redelivers its message, resumes the same upstream request, and FAL gets
exactly one submit."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time

import pytest

from apps.jobs.models import Job
from tests.conftest import DATA
from tests.fal_server import FakeFalServer
from tests.servers import BIN, ROOT, process_database_url

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def worker_env(fal_base: str, media_root) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "DATABASE_URL": process_database_url(),
            "MEDIA_ROOT": str(media_root),
            "FAL_KEY": "test-key",
            "FAL_BASE_URL_OVERRIDE": fal_base,
            "FAL_POLL_INTERVAL_SECONDS": "0.1",
            "FAL_HTTP_TIMEOUT_SECONDS": "2",
            "JOB_HEARTBEAT_SECONDS": "1",
            "JOB_STALE_AFTER_SECONDS": "3",
            # Dead workers are noticed fast: short broker heartbeat, maintenance on every command.
            "WORKER_HEARTBEAT_TIMEOUT_MS": "2000",
            "BROKER_MAINTENANCE_CHANCE": "1000000",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def start_worker(env, log_path) -> subprocess.Popen:
    log = open(log_path, "ab")  # noqa: SIM115  handed to the child process
    return subprocess.Popen(
        [str(BIN / "python"), "manage.py", "rundramatiq", "--processes", "1", "--threads", "1"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def kill_group(process: subprocess.Popen, sig=signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)
    process.wait(timeout=30)


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


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
