"""Worker processes serve their own metrics: a `rundramatiq` started as the Procfile starts it
exposes Dramatiq's Prometheus middleware and the worker-side domain counters, summed over its
worker processes, and the counters move after jobs run."""

from __future__ import annotations

import signal

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from apps.jobs.models import Job
from tests.conftest import DATA
from tests.fal_server import FakeFalServer
from tests.servers import free_port, kill_group, start_worker, wait_for, worker_env

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def scrape(url: str) -> dict[tuple, float] | None:
    """Every sample of the worker's metrics page, keyed by name and labels; None while down."""
    try:
        response = httpx.get(url, timeout=2)
    except httpx.TransportError:
        return None
    assert response.status_code == 200
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


JOB_RUN = (("actor_name", "job_run"), ("queue_name", "generation"))


def test_a_worker_serves_its_processes_metrics_and_they_move_after_jobs(
    alice, broker, media_root, tmp_path, settings
):
    from apps.jobs.services import batch_submit
    from apps.uploads.services import IncomingFile

    fal = FakeFalServer()
    fal.fal.queue_steps = 0
    settings.FAL_KEY = "test-key"
    port = free_port()
    env = worker_env(fal.base, media_root)
    env.update({"WORKER_METRICS_PORT": str(port), "WORKER_METRICS_DIR": str(tmp_path / "prom")})
    worker = start_worker(env, tmp_path / "worker.log", processes=2)
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        before = wait_for(lambda: scrape(url), 60, "the worker's metrics server")
        assert before.get(("dramatiq_messages_total", JOB_RUN), 0) == 0

        jobs = []
        for generator in ("relief", "tripo3d"):
            with open(DATA / "rocket.jpg", "rb") as stream:
                _, (job,) = batch_submit(
                    owner=alice, files=[IncomingFile("rocket.jpg", stream)], generator_id=generator
                )
            jobs.append(job)
        wait_for(
            lambda: (
                Job.objects.filter(pk__in=[j.pk for j in jobs], status="succeeded").count() == 2
            ),
            90,
            "both jobs to succeed",
        )
        # The middleware counts a message once it has been processed, just after the job ends.
        after = wait_for(
            lambda: (s := scrape(url)) and s.get(("dramatiq_messages_total", JOB_RUN)) == 2 and s,
            30,
            "the worker's message counter to reach 2",
        )
        assert after.get(("dramatiq_message_errors_total", JOB_RUN), 0) == 0
        assert after[("dramatiq_message_duration_milliseconds_count", JOB_RUN)] == 2
        assert after[("dramatiq_messages_inprogress", JOB_RUN)] == 0
        upstream = (
            "image2model_upstream_generations_total",
            (("generator", "tripo3d"), ("outcome", "succeeded")),
        )
        assert after[upstream] == 1  # counted inside a worker process, served by the worker
        assert len(fal.fal.submits) == 1
    finally:
        kill_group(worker, signal.SIGTERM)
        fal.stop()
