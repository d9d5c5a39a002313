"""Upload → real Redis broker → real worker → PostgreSQL → artifacts, and the job lifecycle."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
import trimesh
from django.core.management import call_command
from django.utils import timezone

from apps.jobs import pipeline
from apps.jobs.models import Artifact, Job, JobEvent
from tests.conftest import named, sample, wait_for_jobs

pytestmark = pytest.mark.django_db(transaction=True)

PHOTOS = ["astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "horse.png", "logo.png"]


def upload(client, names, **data):
    response = client.post("/api/v1/upload/", {"files": [sample(n) for n in names], **data})
    assert response.status_code == 200, response.content
    return response.json()


def status_of(client, task_id):
    response = client.get(f"/api/v1/status/tasks/{task_id}/status")
    assert response.status_code == 200, response.content
    return response.json()


def test_every_sample_photo_becomes_a_textured_model_within_the_face_limit(
    alice_api, broker, worker
):
    batch = upload(alice_api, PHOTOS, face_limit=4000)
    wait_for_jobs(broker, worker)
    status = status_of(alice_api, batch["task_id"])
    assert status["status"] == "completed" and status["batch_status"] == "completed"
    assert status["progress"] == 100 and status["successful_files"] == len(PHOTOS)
    assert status["result"]["successful_files"] == len(PHOTOS)
    for entry in status["files"]:
        assert entry["status"] == "completed", entry
        response = alice_api.get(entry["download_url"])
        assert response.status_code == 200
        assert response["Content-Type"] == "model/gltf-binary"
        assert response["X-Content-Type-Options"] == "nosniff"
        stem = entry["filename"].rsplit(".", 1)[0]
        assert f'filename="{stem}.glb"' in response["Content-Disposition"]
        data = b"".join(response.streaming_content)
        scene = trimesh.load(io.BytesIO(data), file_type="glb")
        mesh = scene.to_geometry() if hasattr(scene, "to_geometry") else scene
        assert 0 < len(mesh.faces) <= 4000
        assert mesh.visual.uv is not None and mesh.visual.material.baseColorTexture is not None


def test_each_job_leaves_an_ordered_event_log(alice_api, broker, worker):
    batch = upload(alice_api, ["chelsea.png", "coffee.png"])
    wait_for_jobs(broker, worker)
    for job in Job.objects.filter(batch_id=batch["batch_id"]):
        events = list(job.events.order_by("seq"))
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
        statuses = [e.payload["status"] for e in events]
        assert statuses[0] == "queued" and statuses[-1] == "succeeded"
        assert "running" in statuses
        assert events[-1].payload["progress"] == 100
    batch_seqs = list(
        JobEvent.objects.filter(batch_id=batch["batch_id"]).values_list("batch_seq", flat=True)
    )
    assert sorted(batch_seqs) == list(range(1, len(batch_seqs) + 1))


def test_a_redelivered_message_does_not_generate_twice(alice_api, broker, worker):
    batch = upload(alice_api, ["chelsea.png"])
    wait_for_jobs(broker, worker)
    job = Job.objects.get(batch_id=batch["batch_id"])
    events_before = job.events.count()
    sha_before = Artifact.objects.get(job=job, kind="model").sha256

    from apps.jobs.actors import job_run

    job_run.send(str(job.id))  # the same message again, as a broker redelivery would
    wait_for_jobs(broker, worker)
    job.refresh_from_db()
    assert job.status == "succeeded" and job.attempts == 1
    assert job.events.count() == events_before
    assert Artifact.objects.get(job=job, kind="model").sha256 == sha_before


def test_a_job_whose_worker_stopped_is_requeued_once_then_failed(alice_api, broker, worker):
    batch = upload(alice_api, ["chelsea.png"])
    wait_for_jobs(broker, worker)
    job = Job.objects.get(batch_id=batch["batch_id"])
    # As if a worker had claimed it and then died: running, heartbeat long stopped.
    long_ago = timezone.now() - timedelta(hours=1)
    Job.objects.filter(pk=job.pk).update(status="running", heartbeat_at=long_ago)

    out = io.StringIO()
    call_command("reap_stale_jobs", "--stale-after", "60", stdout=out)
    assert "1 re-queued" in out.getvalue()
    wait_for_jobs(broker, worker)
    job.refresh_from_db()
    assert job.status == "succeeded" and job.requeued_by_reaper and job.attempts == 2

    Job.objects.filter(pk=job.pk).update(status="running", heartbeat_at=long_ago)
    out = io.StringIO()
    call_command("reap_stale_jobs", "--stale-after", "60", stdout=out)
    assert "1 failed" in out.getvalue()
    job.refresh_from_db()
    assert job.status == "failed" and job.error_code == "WORKER_LOST"
    assert job.events.order_by("-seq").first().payload["status"] == "failed"


def test_a_running_job_with_a_fresh_heartbeat_is_left_alone(alice_api, broker):
    batch = upload(alice_api, ["chelsea.png"])
    Job.objects.filter(batch_id=batch["batch_id"]).update(
        status="running", heartbeat_at=timezone.now()
    )
    out = io.StringIO()
    call_command("reap_stale_jobs", "--stale-after", "60", stdout=out)
    assert "0 failed, 0 re-queued" in out.getvalue()
    assert Job.objects.get(batch_id=batch["batch_id"]).status == "running"


def test_a_batch_whose_files_all_fail_ends_failed(alice_api, broker, worker, monkeypatch):
    from apps.jobs.providers.base import GenerationError
    from apps.jobs.providers.relief import ReliefGenerator

    def broken(self, image_path, params, context):
        raise GenerationError("NO_SUBJECT", "No subject found in the image.")

    monkeypatch.setattr(ReliefGenerator, "run", broken)
    batch = upload(alice_api, ["chelsea.png", "coffee.png"])
    wait_for_jobs(broker, worker)
    status = status_of(alice_api, batch["task_id"])
    assert status["status"] == "failed" and status["batch_status"] == "failed"
    assert {f["error_code"] for f in status["files"]} == {"NO_SUBJECT"}
    assert status["files"][0]["error"] == "No subject found in the image."


def test_a_transient_fault_is_retried_then_succeeds(
    alice_api, broker, worker, monkeypatch, settings
):
    from apps.jobs.providers.base import GenerationError
    from apps.jobs.providers.relief import ReliefGenerator

    real_run = ReliefGenerator.run
    calls = []

    def flaky(self, image_path, params, context):
        calls.append(1)
        if len(calls) == 1:
            raise GenerationError("UPSTREAM_TIMEOUT", "The generator timed out.", transient=True)
        return real_run(self, image_path, params, context)

    monkeypatch.setattr(ReliefGenerator, "run", flaky)
    from apps.jobs.actors import job_run

    monkeypatch.setitem(job_run.options, "min_backoff", 10)  # retry at once, not in seconds
    batch = upload(alice_api, ["chelsea.png"])
    wait_for_jobs(broker, worker)
    job = Job.objects.get(batch_id=batch["batch_id"])
    assert job.status == "succeeded" and job.attempts == 2 and len(calls) == 2
    assert "retrying" in [e.payload["stage"] for e in job.events.all()]


def test_canceling_a_queued_job_ends_it_canceled(alice_api, broker):
    from apps.jobs.services import job_cancel

    batch = upload(alice_api, ["chelsea.png"])
    job = Job.objects.get(batch_id=batch["batch_id"])
    job_cancel(job=job)
    pipeline.job_run(job_id=str(job.id))  # the message arrives after the cancel
    job.refresh_from_db()
    assert job.status == "canceled" and job.attempts == 0
    assert status_of(alice_api, batch["task_id"])["status"] == "cancelled"


def test_an_image_the_generator_cannot_use_fails_with_a_clear_message(alice_api, broker, worker):
    blank = io.BytesIO()
    from PIL import Image

    Image.new("RGBA", (64, 64), (0, 0, 0, 0)).save(blank, "PNG")
    batch = upload_raw(alice_api, [named(blank.getvalue(), "empty.png")])
    wait_for_jobs(broker, worker)
    job = Job.objects.get(batch_id=batch["batch_id"])
    assert job.status == "failed"
    assert job.error_code and job.error_message


def upload_raw(client, files):
    response = client.post("/api/v1/upload/", {"files": files})
    assert response.status_code == 200, response.content
    return response.json()


def test_a_message_for_a_job_held_by_a_live_worker_comes_back_after_the_stale_period(
    alice_api, broker, settings
):
    batch = upload(alice_api, ["chelsea.png"])
    job = Job.objects.get(batch_id=batch["batch_id"])
    Job.objects.filter(pk=job.pk).update(status="running", heartbeat_at=timezone.now())
    with pytest.raises(pipeline.JobBusy) as busy:
        pipeline.job_run(job_id=str(job.id))
    assert busy.value.delay == (settings.JOB_STALE_AFTER_SECONDS + 5) * 1000
    assert Job.objects.get(pk=job.pk).attempts == 0  # nothing was run


def test_a_redelivered_message_takes_over_a_job_whose_worker_died(alice_api, broker, settings):
    batch = upload(alice_api, ["chelsea.png"])
    job = Job.objects.get(batch_id=batch["batch_id"])
    stale = timezone.now() - timedelta(seconds=settings.JOB_STALE_AFTER_SECONDS + 1)
    Job.objects.filter(pk=job.pk).update(status="running", heartbeat_at=stale, attempts=1)
    pipeline.job_run(job_id=str(job.id))
    job.refresh_from_db()
    assert job.status == "succeeded" and job.attempts == 2
    assert Artifact.objects.filter(job=job, kind="model").count() == 1


def test_a_long_queued_job_gets_its_message_again(alice_api, broker, settings):
    batch = upload(alice_api, ["chelsea.png"])
    broker.flush_all()  # as if the broker had lost the message
    long_ago = timezone.now() - timedelta(seconds=settings.JOB_QUEUED_RESEND_SECONDS + 1)
    Job.objects.filter(batch_id=batch["batch_id"]).update(updated_at=long_ago)
    out = io.StringIO()
    call_command("reap_stale_jobs", stdout=out)
    assert "1 queued jobs re-sent" in out.getvalue()
    assert broker.client.llen(f"{broker.namespace}:generation") == 1


def test_a_job_canceled_while_its_worker_was_lost_ends_canceled(alice_api, broker, worker):
    from apps.jobs.services import job_cancel

    batch = upload(alice_api, ["chelsea.png"])
    wait_for_jobs(broker, worker)
    job = Job.objects.get(batch_id=batch["batch_id"])
    long_ago = timezone.now() - timedelta(hours=1)
    Job.objects.filter(pk=job.pk).update(status="running", heartbeat_at=long_ago)
    job_cancel(job=job)  # running: only asks the (lost) worker to stop
    call_command("reap_stale_jobs", "--stale-after", "60", stdout=io.StringIO())
    wait_for_jobs(broker, worker)  # the re-queued message arrives
    job.refresh_from_db()
    assert job.status == "canceled"


@pytest.mark.parametrize(
    ("size", "storing"), [(1_000, False), (pipeline.STORING_STAGE_MIN_BYTES, True)]
)
def test_the_storing_stage_is_reported_only_for_large_outputs(alice_api, broker, size, storing):
    job = Job.objects.get(pk=upload(alice_api, ["coffee.png"])["uploaded_files"][0]["task_id"])
    job = pipeline.job_claim(job.pk)
    output = pipeline.Output(
        kind="model", format="glb", content_type="model/gltf-binary", data=b"\0" * size
    )
    pipeline._store_outputs(job, [output])
    stages = [event.payload["stage"] for event in job.events.order_by("seq")]
    assert stages[-1] == "done"
    assert ("storing" in stages) is storing
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED
    assert job.artifacts.get(kind="model").size == size


def test_a_job_that_ended_meanwhile_keeps_its_state_when_its_outputs_are_stored(alice_api, broker):
    job = Job.objects.get(pk=upload(alice_api, ["coffee.png"])["uploaded_files"][0]["task_id"])
    job = pipeline.job_claim(job.pk)
    pipeline.job_fail(job.pk, code="WORKER_LOST", message="The worker running this job stopped.")
    big = b"\0" * pipeline.STORING_STAGE_MIN_BYTES
    output = pipeline.Output(kind="model", format="glb", content_type="model/gltf-binary", data=big)
    pipeline._store_outputs(job, [output])
    job.refresh_from_db()
    assert (job.status, job.stage, job.error_code) == (Job.Status.FAILED, "failed", "WORKER_LOST")
    assert "storing" not in [event.payload["stage"] for event in job.events.all()]
    assert job.artifacts.get(kind="model").size == len(big)  # its files stay known
