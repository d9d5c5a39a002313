"""FAL generators through the real fal-client, against a local server speaking FAL's protocol.

Each test counts the submits the server accepted: exactly one per successful job, and never a
second one for a job whose first submit may have been accepted.
"""

from __future__ import annotations

import threading
import time

import pytest
import trimesh
from django.core.cache import cache
from django.test import Client

from apps.jobs import pipeline
from apps.jobs.models import Artifact, Job
from apps.jobs.services import batch_submit, job_cancel
from apps.uploads.services import IncomingFile
from tests.conftest import DATA, sample
from tests.fal_server import SAMPLE_GLB, FakeFalServer

pytestmark = pytest.mark.django_db(transaction=True)

TRIPO = "tripo3d/tripo/v2.5/image-to-3d"


@pytest.fixture
def fal(settings):
    server = FakeFalServer()
    settings.FAL_KEY = "test-key"
    settings.FAL_BASE_URL_OVERRIDE = server.base
    settings.FAL_HTTP_TIMEOUT_SECONDS = 1
    settings.FAL_POLL_INTERVAL_SECONDS = 0.01
    settings.FAL_RETRY_BASE_SECONDS = 0.01
    settings.FAL_POLL_RETRIES = 3
    settings.BREAKER_FAILURE_THRESHOLD = 3
    settings.BREAKER_COOLDOWN_SECONDS = 0.5
    server.fal.hang_seconds = 2
    _reset_breakers()
    yield server.fal
    server.stop()
    _reset_breakers()


def _reset_breakers():
    for name in ("tripo3d", "trellis", "hunyuan3d"):
        cache.delete_many([f"breaker:{name}:{part}" for part in ("failures", "opened_at", "probe")])


def make_job(owner, generator="tripo3d", params=None, face_limit=None, photo="chelsea.png") -> Job:
    with open(DATA / photo, "rb") as stream:
        _, jobs = batch_submit(
            owner=owner,
            files=[IncomingFile(photo, stream)],
            generator_id=generator,
            params=params or {},
            face_limit=face_limit,
        )
    return jobs[0]


def run(job: Job) -> Job:
    pipeline.job_run(job_id=str(job.id))
    job.refresh_from_db()
    return job


def run_until_settled(job: Job, rounds: int = 5) -> Job:
    """Run, and run again after each transient fault, as Dramatiq's retries would."""
    for _ in range(rounds):
        try:
            return run(job)
        except pipeline.TransientJobError:
            continue
    job.refresh_from_db()
    return job


# --- requests and results ----------------------------------------------------------------------


def test_tripo_sends_the_declared_arguments_and_stores_model_and_preview(alice, fal, broker):
    job = run(make_job(alice, params={"texture": "HD"}, face_limit=8000))
    assert job.status == "succeeded", job.error_message
    (request,) = fal.submits
    assert request.endpoint == TRIPO
    body = request.body
    # The stored copy goes up, under our id: the user's file name never leaves the server.
    assert body["image_url"].startswith(f"{fal.base}/blob/")
    assert body["image_url"].endswith(f"{job.source_image_id}.png")
    assert body["texture"] == "HD" and body["pbr"] is False  # pbr is always sent explicitly
    assert body["face_limit"] == 8000
    assert body["texture_alignment"] == "original_image" and body["orientation"] == "default"
    assert "seed" not in body  # optional, not given: not sent
    uploaded = body["image_url"].rsplit("/", 1)[1]
    assert fal.blobs[uploaded] == (DATA / "chelsea.png").read_bytes()
    model = Artifact.objects.get(job=job, kind="model")
    assert model.file.read() == SAMPLE_GLB and model.filename == "chelsea.glb"
    assert Artifact.objects.get(job=job, kind="preview").format == "webp"
    assert job.upstream_request_id == request.id and job.model == TRIPO


def test_trellis_and_hunyuan_send_their_own_parameters(alice, fal, broker):
    trellis = run(make_job(alice, "trellis", params={"texture_size": 2048, "seed": 7}))
    hunyuan = run(make_job(alice, "hunyuan3d", params={"textured_mesh": True}))
    assert trellis.status == hunyuan.status == "succeeded"
    trellis_body = fal.submits_for("fal-ai/trellis")[0].body
    assert trellis_body["texture_size"] == 2048 and trellis_body["seed"] == 7
    assert trellis_body["ss_sampling_steps"] == 12 and trellis_body["mesh_simplify"] == 0.95
    hunyuan_body = fal.submits_for("fal-ai/hunyuan3d/v2")[0].body
    assert "input_image_url" in hunyuan_body and "image_url" not in hunyuan_body
    assert hunyuan_body["textured_mesh"] is True and hunyuan_body["num_inference_steps"] == 50


def test_queue_position_and_logged_percent_become_progress_events(alice, fal, broker, settings):
    fal.queue_steps, fal.progress = 3, [20, 60]
    settings.FAL_POLL_INTERVAL_SECONDS = 0.3  # slower than the coalescing of progress events
    job = run(make_job(alice))
    payloads = [event.payload for event in job.events.order_by("seq")]
    positions = [p["queue_position"] for p in payloads if p["stage"] == "in_queue"]
    assert positions == [2, 1, 0]
    generating = [p["progress"] for p in payloads if p["stage"] == "generating"]
    assert generating == [18, 54]  # 20% and 60% of the generator's 90% share
    assert payloads[-1]["status"] == "succeeded" and payloads[-1]["progress"] == 100


def test_the_generator_declarations_are_published(fal):
    body = Client().get("/api/v1/models/available").json()
    by_id = {model["id"]: model for model in body}
    assert by_id["tripo3d"]["available"] and by_id["tripo3d"]["default"]
    assert by_id["tripo3d"]["circuit_state"] == "closed"
    names = [p["name"] for p in by_id["trellis"]["parameters"]]
    assert names[:2] == ["ss_guidance_strength", "ss_sampling_steps"]
    texture = next(p for p in by_id["trellis"]["parameters"] if p["name"] == "texture_size")
    assert texture["choices"] == [512, 1024, 2048]


def test_without_a_key_fal_generators_say_why_and_relief_is_the_default(settings, alice_api):
    settings.FAL_KEY = ""
    body = Client().get("/api/v1/models/available").json()
    tripo = next(model for model in body if model["id"] == "tripo3d")
    assert tripo["available"] is False and "FAL_KEY" in tripo["unavailable_reason"]
    assert next(model for model in body if model["default"])["id"] == "relief"
    response = alice_api.post(
        "/api/v1/upload/", {"files": [sample("chelsea.png")], "model": "tripo3d"}
    )
    assert response.status_code == 400 and "FAL_KEY" in response.json()["message"]


# --- faults ------------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["500", "503", "reset", "hang"])
def test_a_refused_or_failed_submit_is_retried_and_submits_once(alice, fal, broker, fault):
    fal.fail("submit", "500" if fault == "500" else fault)
    job = make_job(alice)
    if fault in {"reset", "hang"}:
        # The request went out and no answer came: it may be running upstream. Never again.
        job = run(job)
        assert job.status == "failed" and job.error_code == "UPSTREAM_UNCONFIRMED"
        assert "not paid twice" in job.error_message
        assert fal.submit_attempts == 1
        return
    with pytest.raises(pipeline.TransientJobError):
        run(job)
    job.refresh_from_db()
    assert job.status == "queued" and job.stage == "retrying"
    job = run(job)
    assert job.status == "succeeded" and len(fal.submits) == 1


def test_a_connection_refused_submit_is_safe_to_retry(alice, fal, broker, settings):
    from tests.servers import free_port

    settings.FAL_BASE_URL_OVERRIDE = f"http://127.0.0.1:{free_port()}"
    job = make_job(alice)
    with pytest.raises(pipeline.TransientJobError):
        run(job)
    job.refresh_from_db()
    assert job.upstream_submitted_at is None  # the upload never even reached a server


def test_a_submit_accepted_but_never_answered_is_not_sent_again(alice, fal, broker):
    fal.fail("submit", "reset_after_accept")
    job = run(make_job(alice))
    assert job.status == "failed" and job.error_code == "UPSTREAM_UNCONFIRMED"
    assert len(fal.submits) == 1
    # A redelivered message of the same job (e.g. after a worker restart) does not submit.
    Job.objects.filter(pk=job.pk).update(status="queued", error_code="")
    job = run(job)
    assert job.status == "failed" and len(fal.submits) == 1


def test_429_is_retried_after_the_time_fal_asks_for(alice, fal, broker):
    fal.fail("submit", "429")
    job = make_job(alice)
    with pytest.raises(pipeline.TransientJobError) as retry:
        run(job)
    assert retry.value.delay == 7000
    assert run(job).status == "succeeded" and len(fal.submits) == 1


def test_a_validation_error_fails_at_once_with_a_safe_message(alice, fal, broker):
    fal.fail("submit", "422")
    job = run(make_job(alice))
    assert job.status == "failed" and job.error_code == "UPSTREAM_VALIDATION"
    assert (
        job.error_message
        == "The generator refused the input: image_url: image could not be decoded"
    )
    assert job.attempts == 1


@pytest.mark.parametrize("faults", [["hang"], ["500", "503"], ["reset"], ["slow", "429"]])
def test_status_faults_are_retried_without_a_second_submit(alice, fal, broker, faults):
    fal.retry_after_seconds = 1
    fal.fail("status", *faults)
    job = run(make_job(alice))
    assert job.status == "succeeded", job.error_message
    assert len(fal.submits) == 1


def test_a_long_outage_requeues_the_job_which_resumes_the_same_request(alice, fal, broker):
    fal.fail("status", *["503"] * 4)  # more than FAL_POLL_RETRIES in a row
    job = make_job(alice)
    with pytest.raises(pipeline.TransientJobError):
        run(job)
    job.refresh_from_db()
    assert job.status == "queued" and job.upstream_request_id == fal.submits[0].id
    job = run(job)
    assert job.status == "succeeded" and len(fal.submits) == 1 and job.attempts == 2


@pytest.mark.parametrize(
    ("operation", "fault", "code"),
    [
        ("result", "malformed", "UPSTREAM_BAD_RESULT"),
        ("result", "missing_mesh", "UPSTREAM_NO_MODEL"),
        ("blob", "oversize", "UPSTREAM_OUTPUT_TOO_LARGE"),
        ("blob", "not_glb", "UPSTREAM_BAD_OUTPUT"),
        ("status", "fail", "UPSTREAM_FAILED"),
    ],
)
def test_bad_outputs_fail_the_job_with_a_clear_code(
    alice, fal, broker, settings, operation, fault, code
):
    settings.FAL_MAX_DOWNLOAD_BYTES = 1024 * 1024
    # Blob faults apply to the first download after the image upload's own URL is served.
    fal.fail(operation, fault)
    job = run_until_settled(make_job(alice))
    assert job.status == "failed" and job.error_code == code, job.error_message
    assert len(fal.submits) == 1
    assert not Artifact.objects.filter(job=job).exists()


def test_the_job_deadline_cancels_the_upstream_request(alice, fal, broker, settings):
    settings.FAL_JOB_DEADLINE_SECONDS = 0.3
    fal.queue_steps = 1000
    settings.FAL_POLL_INTERVAL_SECONDS = 0.05
    job = run(make_job(alice))
    assert job.status == "failed" and job.error_code == "GENERATION_TIMEOUT"
    assert fal.cancels == [fal.submits[0].id]


def test_canceling_while_queued_upstream_cancels_the_fal_request(alice, fal, broker, settings):
    fal.queue_steps = 1000
    settings.FAL_POLL_INTERVAL_SECONDS = 0.05
    job = make_job(alice)
    runner = threading.Thread(target=pipeline.job_run, kwargs={"job_id": str(job.id)})
    runner.start()
    for _ in range(100):
        job.refresh_from_db()
        if job.stage == "in_queue":
            break
        time.sleep(0.05)
    job_cancel(job=job)
    runner.join(20)
    job.refresh_from_db()
    assert job.status == "canceled"
    assert fal.cancels == [fal.submits[0].id]


# --- circuit breaker and fallback --------------------------------------------------------------


def test_the_breaker_opens_fails_fast_half_opens_and_closes(
    alice, alice_api, fal, broker, settings
):
    settings.JOB_MAX_RETRIES = 0  # each transient fault fails its job, to count quickly
    for _ in range(3):
        fal.fail("submit", "503")
        assert run(make_job(alice)).error_code == "UPSTREAM_ERROR"
    attempts = fal.submit_attempts
    blocked = run(make_job(alice))
    assert blocked.status == "failed" and blocked.error_code == "GENERATION_UNAVAILABLE"
    assert blocked.error_message == "The generation service is unavailable. Please try again later."
    assert fal.submit_attempts == attempts  # failed fast: nothing sent
    health = Client().get("/api/v1/health/detailed").json()["components"]["generators"]
    assert health["circuits"]["tripo3d"] == "open"
    available = {m["id"]: m for m in Client().get("/api/v1/models/available").json()}
    assert available["tripo3d"]["circuit_state"] == "open"
    metrics = Client().get("/metrics").content.decode()
    assert 'image2model_circuit_state{generator="tripo3d",state="open"} 1.0' in metrics
    assert 'image2model_circuit_state{generator="trellis",state="closed"} 1.0' in metrics
    upload = alice_api.post(
        "/api/v1/upload/", {"files": [sample("coffee.png")], "model": "tripo3d"}
    )
    assert upload.status_code == 200  # uploads keep working while the circuit is open
    time.sleep(0.6)  # cooldown over: one probe goes through
    assert available_state() == "half_open"
    assert run(make_job(alice)).status == "succeeded"
    assert available_state() == "closed"


def available_state() -> str:
    models = Client().get("/api/v1/models/available").json()
    return next(m for m in models if m["id"] == "tripo3d")["circuit_state"]


def test_an_open_circuit_falls_back_to_the_configured_generator(alice, fal, broker, settings):
    settings.GENERATOR_FALLBACKS = {"tripo3d": "trellis"}
    cache.set("breaker:tripo3d:opened_at", time.time(), timeout=60)
    job = run(make_job(alice, face_limit=5000))
    assert job.status == "succeeded"
    assert job.generator == "trellis" and job.requested_generator == "tripo3d"
    assert [r.endpoint for r in fal.submits] == ["fal-ai/trellis"]
    assert "face_limit" not in fal.submits[0].body  # trellis does not take it
    assert any(e.payload["stage"] == "fallback" for e in job.events.all())
    mesh = trimesh.load(Artifact.objects.get(job=job, kind="model").file.path, force="mesh")
    assert len(mesh.faces) == 12


def test_an_open_circuit_does_not_strand_a_request_fal_already_accepted(alice, fal, broker):
    fal.fail("status", *["503"] * 4)
    job = make_job(alice)
    with pytest.raises(pipeline.TransientJobError):
        run(job)
    cache.set("breaker:tripo3d:opened_at", time.time(), timeout=60)  # FAL looked down meanwhile
    job = run(job)
    assert job.status == "succeeded" and len(fal.submits) == 1


def test_a_fallback_drops_values_outside_its_own_ranges(alice, fal, broker, settings):
    settings.GENERATOR_FALLBACKS = {"tripo3d": "relief"}
    cache.set("breaker:tripo3d:opened_at", time.time(), timeout=60)
    job = run(make_job(alice, face_limit=300000))  # valid for Tripo3D, too many for Relief
    assert job.status == "succeeded" and job.generator == "relief"
    assert job.params["face_limit"] == 20000  # Relief's default
    assert fal.submits == []
