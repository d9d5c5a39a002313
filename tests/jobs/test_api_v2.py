"""API v2: batches and jobs as resources, problem details, idempotent creates, Prefer: wait,
cursor lists, cancel/retry/delete, generators, version headers."""

from __future__ import annotations

import hashlib
import threading
import uuid

import httpx
import pytest
from django.test import Client

from apps.jobs.models import Artifact, IdempotencyRecord, Job, JobEvent
from apps.uploads.models import Batch
from tests.conftest import named, sample, wait_for_jobs
from tests.servers import Server, services_env

pytestmark = pytest.mark.django_db(transaction=True)

PROBLEM = "application/problem+json"


def create(client: Client, *names: str, headers=None, **fields):
    data = {"files": [sample(name) for name in names], **fields}
    return client.post("/api/v2/batches", data, headers=headers or {})


def files(media_root) -> set[str]:
    return {p.relative_to(media_root).as_posix() for p in media_root.rglob("*") if p.is_file()}


def assert_problem(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == PROBLEM
    assert response["X-API-Version"] == "2"
    body = response.json()
    assert body["status"] == status and body["code"] == code
    assert body["type"].endswith(code.lower().replace("_", "-"))
    assert body["title"] and body["detail"] and body["instance"]
    assert body["request_id"] == response["X-Request-ID"]
    return body


# --- create, get, artifacts -----------------------------------------------------------------


def test_a_batch_is_created_runs_and_shows_its_models_with_working_signed_links(
    alice_api, broker, worker, media_root
):
    response = create(alice_api, "chelsea.png", "coffee.png", params='{"face_limit": 3000}')
    assert response.status_code == 201, response.content
    assert response["X-API-Version"] == "2"
    batch = response.json()
    assert response["Location"] == f"/api/v2/batches/{batch['id']}"
    assert batch["status"] == "queued" and batch["finished"] is False
    assert batch["generator"] == "relief" and batch["params"]["face_limit"] == 3000
    assert [job["file_name"] for job in batch["jobs"]] == ["chelsea.png", "coffee.png"]
    assert batch["counts"] == {
        "total": 2,
        "queued": 2,
        "running": 0,
        "succeeded": 0,
        "failed": 0,
        "canceled": 0,
    }

    wait_for_jobs(broker, worker)
    done = alice_api.get(f"/api/v2/batches/{batch['id']}").json()
    assert done["status"] == "completed" and done["finished"] and done["progress"] == 100
    for job in done["jobs"]:
        assert job["status"] == "succeeded" and job["error"] is None
        assert job["eta_seconds"] is None and job["queue_position"] is None
        model = next(a for a in job["artifacts"] if a["kind"] == "model")
        assert model["format"] == "glb" and 0 < model["face_count"] <= 3000
        # The signed link works without any credentials and serves the bytes it describes.
        fetched = Client().get(model["url"])
        assert fetched.status_code == 200
        body = b"".join(fetched.streaming_content)
        assert len(body) == model["size"]
        assert hashlib.sha256(body).hexdigest() == model["sha256"]
        single = alice_api.get(f"/api/v2/jobs/{job['id']}").json()
        assert single["id"] == job["id"] and single["artifacts"][0]["sha256"]


def test_bad_input_gets_problem_details_and_stores_nothing(alice_api, media_root):
    before = Batch.objects.count()
    text = named(b"not an image at all", "photo.png")
    assert_problem(alice_api.post("/api/v2/batches", {"files": [text]}), 400, "INVALID_FILE")
    body = assert_problem(create(alice_api, "chelsea.png", params="[1, 2]"), 422, "INVALID_PARAMS")
    assert body["errors"][0]["field"] == "params"
    assert_problem(create(alice_api, "chelsea.png", generator="nope"), 400, "INVALID_MODEL")
    body = assert_problem(alice_api.post("/api/v2/batches", {}), 422, "VALIDATION_ERROR")
    assert any(error["field"] == "files" for error in body["errors"])
    assert Batch.objects.count() == before and files(media_root) == set()


def test_credentials_scopes_and_other_owners(alice_api, bob_api, alice, media_root):
    from apps.accounts.services import api_key_create, api_key_revoke

    batch = create(alice_api, "chelsea.png").json()
    job_id = batch["jobs"][0]["id"]
    body = assert_problem(Client().get("/api/v2/batches"), 401, "UNAUTHORIZED")
    assert "Bearer" in body["detail"]
    assert Client().get("/api/v2/batches")["WWW-Authenticate"].startswith("Bearer")
    wrong = Client(HTTP_AUTHORIZATION="Bearer i2m_wrong")
    assert_problem(wrong.get(f"/api/v2/jobs/{job_id}"), 401, "UNAUTHORIZED")
    key, secret = api_key_create(owner=alice, name="read only", scopes=["read"])
    reader = Client(HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert reader.get(f"/api/v2/jobs/{job_id}").status_code == 200
    assert_problem(reader.post(f"/api/v2/jobs/{job_id}/cancel"), 403, "FORBIDDEN")
    api_key_revoke(api_key=key)
    assert_problem(reader.get(f"/api/v2/jobs/{job_id}"), 401, "UNAUTHORIZED")
    # Someone else's objects are absent, whatever the method.
    for method, path in [
        ("get", f"/api/v2/batches/{batch['id']}"),
        ("get", f"/api/v2/jobs/{job_id}"),
        ("post", f"/api/v2/jobs/{job_id}/cancel"),
        ("post", f"/api/v2/batches/{batch['id']}/retry"),
        ("delete", f"/api/v2/jobs/{job_id}"),
        ("delete", f"/api/v2/batches/{batch['id']}"),
    ]:
        assert_problem(getattr(bob_api, method)(path), 404, "NOT_FOUND")
    assert bob_api.get("/api/v2/jobs").json()["items"] == []
    assert_problem(alice_api.get(f"/api/v2/jobs/{uuid.uuid4()}"), 404, "NOT_FOUND")
    assert_problem(alice_api.get("/api/v2/jobs/not-a-uuid"), 422, "VALIDATION_ERROR")
    assert_problem(alice_api.get("/api/v2/nothing-here"), 404, "NOT_FOUND")
    assert_problem(alice_api.put("/api/v2/batches"), 405, "METHOD_NOT_ALLOWED")
    assert Job.objects.filter(pk=job_id, status="queued").exists()


# --- idempotency and Prefer: wait ------------------------------------------------------------


def test_the_same_idempotency_key_and_request_replays_the_first_answer(alice_api, media_root):
    headers = {"Idempotency-Key": "order-1"}
    first = create(alice_api, "chelsea.png", headers=headers)
    assert first.status_code == 201 and "Idempotent-Replayed" not in first
    stored = files(media_root)
    again = create(alice_api, "chelsea.png", headers=headers)
    assert again.status_code == 201 and again["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert Batch.objects.count() == 1 and files(media_root) == stored

    other_file = create(alice_api, "coffee.png", headers=headers)
    assert_problem(other_file, 409, "IDEMPOTENCY_KEY_REUSED")
    other_params = create(alice_api, "chelsea.png", headers=headers, params='{"face_limit": 900}')
    assert_problem(other_params, 409, "IDEMPOTENCY_KEY_REUSED")
    assert Batch.objects.count() == 1

    # A refused first request does not keep the key.
    bad = {"Idempotency-Key": "order-2"}
    assert create(alice_api, "chelsea.png", headers=bad, generator="nope").status_code == 400
    assert create(alice_api, "chelsea.png", headers=bad).status_code == 201
    assert Batch.objects.count() == 2


def test_idempotency_keys_belong_to_their_user_and_expire(alice_api, bob_api, media_root):
    from datetime import timedelta

    from django.utils import timezone

    headers = {"Idempotency-Key": "shared-name"}
    alices = create(alice_api, "chelsea.png", headers=headers).json()
    bobs = create(bob_api, "chelsea.png", headers=headers).json()
    assert alices["id"] != bobs["id"]
    IdempotencyRecord.objects.update(created_at=timezone.now() - timedelta(hours=25))
    later = create(alice_api, "coffee.png", headers=headers)
    assert later.status_code == 201 and later.json()["id"] not in (alices["id"], bobs["id"])


def test_prefer_wait_answers_when_the_batch_has_finished(alice_api, broker, worker, media_root):
    response = create(alice_api, "chelsea.png", headers={"Prefer": "wait=60"})
    assert response.status_code == 201
    assert response["Preference-Applied"] == "wait=60"
    body = response.json()
    assert body["finished"] is True and body["status"] == "completed"
    assert body["jobs"][0]["artifacts"]


def test_prefer_wait_gives_up_after_n_seconds(alice_api, broker, media_root):
    response = create(alice_api, "chelsea.png", headers={"Prefer": "respond-async, wait=1"})
    assert response.status_code == 201 and response["Preference-Applied"] == "wait=1"
    assert response.json()["finished"] is False  # no worker runs in this test


# --- lists -----------------------------------------------------------------------------------


def test_lists_are_newest_first_with_cursors_and_filters(alice_api, bob_api, media_root):
    ids = [create(alice_api, "chelsea.png").json()["id"] for _ in range(5)]
    create(bob_api, "chelsea.png")
    seen, cursor = [], None
    while True:
        query = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = alice_api.get("/api/v2/batches", query).json()
        seen += [batch["id"] for batch in page["items"]]
        assert all("jobs" not in batch or batch["jobs"] is None for batch in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids[::-1]

    Job.objects.filter(batch_id=ids[0]).update(status="failed", error_code="UPSTREAM_ERROR")
    Job.objects.filter(batch_id=ids[1]).update(status="succeeded")
    by_status = alice_api.get("/api/v2/batches", {"status": "failed"}).json()["items"]
    assert [batch["id"] for batch in by_status] == [ids[0]]
    assert by_status[0]["status"] == "failed" and by_status[0]["counts"]["failed"] == 1
    completed = alice_api.get("/api/v2/batches", {"status": "completed"}).json()["items"]
    assert [batch["id"] for batch in completed] == [ids[1]]
    queued = alice_api.get("/api/v2/batches", {"status": "queued"}).json()["items"]
    assert [batch["id"] for batch in queued] == ids[2:][::-1]

    jobs = alice_api.get("/api/v2/jobs", {"status": "failed"}).json()["items"]
    assert len(jobs) == 1 and jobs[0]["error"]["code"] == "UPSTREAM_ERROR"
    middle = Job.objects.get(batch_id=ids[2]).created_at.isoformat()
    after = alice_api.get("/api/v2/jobs", {"created_after": middle}).json()["items"]
    assert {job["batch_id"] for job in after} == set(ids[3:])
    one = alice_api.get("/api/v2/jobs", {"batch_id": ids[4]}).json()["items"]
    assert [job["batch_id"] for job in one] == [ids[4]]
    assert alice_api.get("/api/v2/jobs", {"generator": "trellis"}).json()["items"] == []

    assert_problem(alice_api.get("/api/v2/jobs", {"cursor": "forged"}), 400, "INVALID_CURSOR")
    assert_problem(alice_api.get("/api/v2/jobs", {"limit": 0}), 422, "VALIDATION_ERROR")
    assert_problem(alice_api.get("/api/v2/batches", {"status": "done"}), 422, "VALIDATION_ERROR")


# --- cancel, retry, delete --------------------------------------------------------------------


def test_cancel_retry_and_delete_follow_the_job_s_state(alice_api, broker, media_root):
    batch = create(alice_api, "chelsea.png", "coffee.png").json()
    first, second = (job["id"] for job in batch["jobs"])
    assert_problem(alice_api.delete(f"/api/v2/jobs/{first}"), 409, "JOB_NOT_FINISHED")
    assert_problem(alice_api.post(f"/api/v2/jobs/{first}/retry"), 409, "NOT_RETRYABLE")
    assert_problem(alice_api.delete(f"/api/v2/batches/{batch['id']}"), 409, "JOB_NOT_FINISHED")

    canceled = alice_api.post(f"/api/v2/jobs/{first}/cancel")
    assert canceled.status_code == 200 and canceled.json()["status"] == "canceled"
    assert_problem(alice_api.post(f"/api/v2/jobs/{first}/cancel"), 409, "NOT_CANCELABLE")
    retried = alice_api.post(f"/api/v2/jobs/{first}/retry")
    assert retried.status_code == 200 and retried.json()["status"] == "queued"

    whole = alice_api.post(f"/api/v2/batches/{batch['id']}/cancel").json()
    assert whole["status"] == "canceled" and whole["counts"]["canceled"] == 2
    again = alice_api.post(f"/api/v2/batches/{batch['id']}/retry").json()
    assert again["counts"]["queued"] == 2
    alice_api.post(f"/api/v2/batches/{batch['id']}/cancel")

    assert alice_api.delete(f"/api/v2/jobs/{first}").status_code == 204
    assert not Job.objects.filter(pk=first).exists()
    assert not JobEvent.objects.filter(job_id=first).exists()
    assert alice_api.get(f"/api/v2/batches/{batch['id']}").json()["counts"]["total"] == 1
    assert alice_api.delete(f"/api/v2/batches/{batch['id']}").status_code == 204
    assert not Batch.objects.filter(pk=batch["id"]).exists()
    assert not Job.objects.filter(pk=second).exists()
    assert files(media_root) == set()
    assert_problem(alice_api.get(f"/api/v2/batches/{batch['id']}"), 404, "NOT_FOUND")


def test_deleting_a_finished_job_deletes_its_models(alice_api, broker, worker, media_root):
    batch = create(alice_api, "chelsea.png", "coffee.png").json()
    wait_for_jobs(broker, worker)
    first, second = (job["id"] for job in batch["jobs"])
    outputs = set(Artifact.objects.filter(job_id=first).values_list("file", flat=True))
    kept = set(Artifact.objects.filter(job_id=second).values_list("file", flat=True))
    assert outputs and outputs <= files(media_root)
    assert alice_api.delete(f"/api/v2/jobs/{first}").status_code == 204
    assert not outputs & files(media_root) and kept <= files(media_root)


# --- generators, versions, events -------------------------------------------------------------


def test_generators_declare_parameters_availability_and_circuits(alice_api, settings):
    settings.FAL_KEY = ""
    generators = {g["id"]: g for g in alice_api.get("/api/v2/generators").json()}
    assert set(generators) == {"relief", "tripo3d", "trellis", "hunyuan3d"}
    assert generators["relief"]["available"] and generators["relief"]["default"]
    assert generators["relief"]["circuit"] is None
    assert any(param["name"] == "face_limit" for param in generators["relief"]["params"])
    assert not generators["tripo3d"]["available"] and generators["tripo3d"]["unavailable_reason"]


def test_every_api_response_says_its_version_and_v1_points_to_v2(alice_api):
    v1 = alice_api.get("/api/v1/models/available")
    assert v1["X-API-Version"] == "1"
    assert v1["Link"] == '</api/v2/docs>; rel="successor-version"'
    v1_error = alice_api.get("/api/v1/status/tasks/not-a-uuid/status")
    assert v1_error.status_code == 400 and v1_error["X-API-Version"] == "1"
    assert v1_error.json()["error"] is True  # v1 keeps its envelope
    assert alice_api.get("/api/v2/generators")["X-API-Version"] == "2"
    schema = Client().get("/api/v2/openapi.json").json()
    assert "/api/v2/batches" in schema["paths"] and schema["info"]["version"] == "2"


@pytest.fixture(scope="module")
def live(django_db_setup, django_db_blocker, tmp_path_factory):
    media = tmp_path_factory.mktemp("v2-media")
    with django_db_blocker.unblock():
        env = services_env(media)
    server = Server(env, tmp_path_factory.mktemp("v2-logs") / "server.log")
    yield server
    server.stop()


@pytest.mark.slow
def test_two_identical_creates_at_once_make_one_batch(live, alice_key):
    headers = {"Authorization": f"Bearer {alice_key}", "Idempotency-Key": "race-1"}
    photo = sample("chelsea.png").getvalue()
    answers: list[httpx.Response] = []
    start = threading.Barrier(4)

    def send():
        start.wait()
        answers.append(
            httpx.post(
                f"{live.url}/api/v2/batches",
                headers=headers,
                files={"files": ("chelsea.png", photo, "image/png")},
                timeout=60,
            )
        )

    threads = [threading.Thread(target=send) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [answer.status_code for answer in answers] == [201] * 4
    assert len({answer.json()["id"] for answer in answers}) == 1
    assert sum(answer.headers.get("Idempotent-Replayed") == "true" for answer in answers) == 3
    assert Batch.objects.count() == 1


@pytest.mark.slow
def test_v2_event_streams_and_their_errors(live, alice_key, bob_key):
    auth = {"Authorization": f"Bearer {alice_key}"}
    photo = sample("chelsea.png").getvalue()
    batch = httpx.post(
        f"{live.url}/api/v2/batches",
        headers=auth,
        files={"files": ("chelsea.png", photo, "image/png")},
        timeout=30,
    ).json()
    job_id = batch["jobs"][0]["id"]
    httpx.post(f"{live.url}/api/v2/jobs/{job_id}/cancel", headers=auth, timeout=10)
    for path in (batch["events_url"], f"/api/v2/jobs/{job_id}/events"):
        with httpx.stream("GET", live.url + path, headers=auth, timeout=30) as stream:
            assert stream.status_code == 200
            assert stream.headers["X-API-Version"] == "2"
            text = "".join(stream.iter_text())
        assert "event: file_update" in text and "event: task_failed" in text
    # events_url carries a stream token, for EventSource, which cannot send headers.
    with httpx.stream("GET", live.url + batch["events_url"], timeout=30) as stream:
        assert stream.status_code == 200 and "task_failed" in "".join(stream.iter_text())
    bare = batch["events_url"].split("?")[0]
    missing = httpx.get(f"{live.url}{bare}", timeout=10)
    assert missing.status_code == 401
    assert missing.headers["Content-Type"] == PROBLEM
    assert missing.json()["code"] == "UNAUTHORIZED"
    other = httpx.get(
        f"{live.url}{bare}",
        headers={"Authorization": f"Bearer {bob_key}"},
        timeout=10,
    )
    assert other.status_code == 404 and other.json()["code"] == "NOT_FOUND"
    assert other.json()["detail"] == "No such batch." and other.headers["X-API-Version"] == "2"
    bad = httpx.get(f"{live.url}/api/v2/jobs/not-a-uuid/events", headers=auth, timeout=10)
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "job_id"
    # v1 streams say their version too, and point to v2.
    v1 = f"{live.url}/api/v1/status/tasks/{batch['id']}/stream"
    with httpx.stream("GET", v1, headers=auth, timeout=30) as stream:
        assert stream.status_code == 200 and stream.headers["X-API-Version"] == "1"
        assert stream.headers["Link"] == '</api/v2/docs>; rel="successor-version"'
        assert "task_failed" in "".join(stream.iter_text())


def test_malformed_requests_are_refused_not_failed(alice_api, media_root):
    """Cases the contract fuzzer found answering 500."""
    no_boundary = alice_api.post("/api/v2/batches", b"abc", content_type="multipart/form-data")
    assert_problem(no_boundary, 400, "MALFORMED_BODY")
    v1 = alice_api.post("/api/v1/upload/", b"abc", content_type="multipart/form-data")
    assert v1.status_code == 400 and v1.json()["error"] is True
    for path in ("/api/v2/jobs", "/api/v2/batches"):
        nul = alice_api.get(path, {"generator": "a\x00b"})
        assert_problem(nul, 422, "VALIDATION_ERROR")
        number = alice_api.get(path, {"created_before": "0.5"})
        assert_problem(number, 422, "VALIDATION_ERROR")
        # An offset PostgreSQL cannot store is read in UTC.
        far = alice_api.get(path, {"created_after": "2026-04-15T19:19:08+16:57"})
        assert far.status_code == 200 and far.json()["items"] == []
    odd = create(alice_api, "chelsea.png", params='{"face_limit": 5000, "x\\u0000": "\\u0000"}')
    assert odd.status_code in (400, 422) and odd["Content-Type"] == PROBLEM
    assert Batch.objects.count() == 0


def test_the_openapi_document_says_errors_are_problem_details():
    schema = Client().get("/api/v2/openapi.json").json()
    responses = schema["paths"]["/api/v2/jobs/{job_id}"]["get"]["responses"]
    assert set(responses["404"]["content"]) == {"application/problem+json"}
    assert set(responses["200"]["content"]) == {"application/json"}


def test_cursors_belong_to_their_list_and_filters(alice_api, media_root):
    for _ in range(3):
        create(alice_api, "chelsea.png")
    cursor = alice_api.get("/api/v2/batches", {"limit": 1}).json()["next_cursor"]
    assert cursor
    assert alice_api.get("/api/v2/batches", {"limit": 1, "cursor": cursor}).status_code == 200
    other_filter = alice_api.get("/api/v2/batches", {"cursor": cursor, "status": "queued"})
    assert_problem(other_filter, 400, "INVALID_CURSOR")
    assert_problem(alice_api.get("/api/v2/jobs", {"cursor": cursor}), 400, "INVALID_CURSOR")


def test_a_pending_key_whose_request_died_is_reclaimed(alice_api, alice, media_root):
    from datetime import timedelta

    from django.utils import timezone

    from apps.jobs.api_v2 import _request_hash

    photo = sample("chelsea.png")
    photo.name = "chelsea.png"
    # A first request that died after claiming the key, before its batch committed.
    IdempotencyRecord.objects.create(
        owner=alice,
        key="crashed",
        request_hash=_request_hash([_Upload(photo)], "relief", {}),
        created_at=timezone.now() - timedelta(minutes=6),
    )
    response = create(alice_api, "chelsea.png", headers={"Idempotency-Key": "crashed"})
    assert response.status_code == 201 and "Idempotent-Replayed" not in response
    assert Batch.objects.count() == 1
    assert IdempotencyRecord.objects.get(key="crashed").response_body["id"] == response.json()["id"]


class _Upload:
    """The parts of an UploadedFile that the request hash reads."""

    def __init__(self, stream):
        self.stream, self.name = stream, stream.name

    def chunks(self):
        yield self.stream.getvalue()

    def seek(self, position):
        self.stream.seek(position)


def test_a_batch_whose_images_other_batches_use_is_not_deleted(alice_api, media_root):
    batch = create(alice_api, "chelsea.png").json()
    image_id = str(Job.objects.get(batch_id=batch["id"]).source_image_id)
    # v1 models/generate starts a job, in a batch of its own, on an image of this batch.
    generated = alice_api.post(
        "/api/v1/models/generate", {"file_id": image_id}, content_type="application/json"
    ).json()
    alice_api.post(f"/api/v2/batches/{batch['id']}/cancel")
    alice_api.post(f"/api/v2/batches/{generated['batch_id']}/cancel")
    refused = alice_api.delete(f"/api/v2/batches/{batch['id']}")
    assert_problem(refused, 409, "IMAGES_IN_USE")
    assert Job.objects.filter(pk=generated["job_id"]).exists()
    assert alice_api.delete(f"/api/v2/batches/{generated['batch_id']}").status_code == 204
    assert alice_api.delete(f"/api/v2/batches/{batch['id']}").status_code == 204
    assert files(media_root) == set()
