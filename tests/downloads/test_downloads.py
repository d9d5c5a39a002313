"""Downloads: one file, the signed list, signed direct links, the zip; and ownership (404)."""

from __future__ import annotations

import io
import zipfile

import httpx
import pytest
from django.core.signing import TimestampSigner
from django.test import Client

from apps.jobs.models import Artifact
from tests.conftest import DATA as DATA_DIR
from tests.conftest import sample, wait_for_jobs

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def finished_batch(alice_api, broker, worker):
    response = alice_api.post(
        "/api/v1/upload/",
        {
            "files": [sample("chelsea.png"), sample("coffee.png"), sample("rocket.jpg")],
            "face_limit": "2000",
        },
    )
    assert response.status_code == 200
    wait_for_jobs(broker, worker)
    return response.json()["job_id"]


def stored_bytes(artifact: Artifact) -> bytes:
    with artifact.file.open("rb") as stream:
        return stream.read()


def test_the_list_gives_signed_links_that_work_without_a_header(alice_api, finished_batch):
    body = alice_api.get(f"/api/v1/download/{finished_batch}/all").json()
    assert body["job_id"] == finished_batch and body["total_files"] == 3
    assert [f["filename"] for f in body["files"]] == ["chelsea.glb", "coffee.glb", "rocket.glb"]
    anonymous = Client()
    for entry, url in zip(body["files"], body["download_urls"], strict=True):
        assert entry["mime_type"] == "model/gltf-binary"
        assert url.startswith("http://testserver/api/v1/download/direct/")
        response = anonymous.get(url)
        assert response.status_code == 200
        data = b"".join(response.streaming_content)
        assert len(data) == entry["size"]
        artifact = Artifact.objects.get(job_id=entry["job_id"], kind="model")
        assert data == stored_bytes(artifact)
        preview = anonymous.get(entry["rendered_image"]["url"])
        assert preview["Content-Type"] == "image/png"
        assert b"".join(preview.streaming_content).startswith(b"\x89PNG")


def test_the_zip_holds_every_model_with_the_stored_bytes(alice_api, finished_batch):
    response = alice_api.get(f"/api/v1/download/{finished_batch}/archive")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/zip"
    data = b"".join(response.streaming_content)
    assert int(response["Content-Length"]) == len(data)
    archive = zipfile.ZipFile(io.BytesIO(data))
    assert archive.testzip() is None
    assert sorted(archive.namelist()) == ["chelsea.glb", "coffee.glb", "rocket.glb"]
    for artifact in Artifact.objects.filter(job__batch_id=finished_batch, kind="model"):
        assert archive.read(artifact.filename) == stored_bytes(artifact)


def test_a_tampered_or_expired_link_is_refused(alice_api, finished_batch, settings):
    url = alice_api.get(f"/api/v1/download/{finished_batch}/all").json()["download_urls"][0]
    token = url.rsplit("/", 1)[1]
    forged = Client().get(f"/api/v1/download/direct/{token[:-2]}xx")
    assert forged.status_code == 404 and forged.json()["error"] is True
    settings.DOWNLOAD_LINK_MAX_AGE_SECONDS = -1
    expired = Client().get(f"/api/v1/download/direct/{token}")
    assert expired.status_code == 410
    assert expired.json()["error_code"] == "LINK_EXPIRED"


def test_a_link_signed_with_another_salt_is_refused(finished_batch):
    artifact = Artifact.objects.filter(job__batch_id=finished_batch).first()
    token = TimestampSigner().sign(str(artifact.id))
    assert Client().get(f"/api/v1/download/direct/{token}").status_code == 404


@pytest.mark.parametrize("name", ["..%2Fsecret.glb", "a%5Cb.glb", "%00.glb"])
def test_a_file_name_with_tricks_is_refused(alice_api, finished_batch, name):
    response = alice_api.get(f"/api/v1/download/{finished_batch}/{name}")
    assert response.status_code in {400, 404}
    assert response.json()["error"] is True


def test_bad_ids_are_400(alice_api):
    for path in ["/api/v1/download/not-a-uuid/all", "/api/v1/status/tasks/123/status"]:
        response = alice_api.get(path)
        assert response.status_code == 400
    message = alice_api.get("/api/v1/status/tasks/zzz/status").json()["message"]
    assert message == "Invalid task ID format. Expected UUID format."


def test_another_users_key_gets_404_everywhere(bob_api, alice_api, finished_batch):
    job = alice_api.get(f"/api/v1/status/tasks/{finished_batch}/status").json()["files"][0]
    paths = [
        f"/api/v1/status/tasks/{finished_batch}/status",
        f"/api/v1/download/{finished_batch}/all",
        f"/api/v1/download/{finished_batch}/archive",
        f"/api/v1/download/{finished_batch}/chelsea.glb",
        f"/api/v1/models/job/{job['job_id']}",
    ]
    for path in paths:
        response = bob_api.get(path)
        assert response.status_code == 404, path
        assert response.json()["error"] is True
    generate = bob_api.post(
        "/api/v1/models/generate", {"file_id": job["file_id"]}, content_type="application/json"
    )
    assert generate.status_code == 404


def test_unknown_api_paths_and_methods_answer_in_the_envelope(alice_api):
    missing = alice_api.get("/api/v1/nothing/here/")
    assert missing.status_code == 404 and missing.json()["error_code"] == "HTTP_404"
    wrong_method = alice_api.delete("/api/v1/upload/")
    assert wrong_method.status_code == 405 and wrong_method.json()["error_code"] == "HTTP_405"


def test_models_available_publishes_the_declaration():
    body = Client().get("/api/v1/models/available").json()
    relief = next(model for model in body if model["id"] == "relief")
    assert relief["available"] is True and relief["supported_formats"] == ["glb"]
    face_limit = next(p for p in relief["parameters"] if p["name"] == "face_limit")
    assert face_limit["type"] == "integer" and face_limit["maximum"] == 200000
    assert face_limit["default"] == 20000


def test_generate_starts_one_more_job_for_an_uploaded_file(
    alice_api, finished_batch, broker, worker
):
    file_id = alice_api.get(f"/api/v1/status/tasks/{finished_batch}/status").json()["files"][0][
        "file_id"
    ]
    response = alice_api.post(
        "/api/v1/models/generate",
        {"file_id": file_id, "face_limit": 1000, "params": {"invert": True}},
        content_type="application/json",
    )
    assert response.status_code == 200, response.content
    job_id = response.json()["job_id"]
    wait_for_jobs(broker, worker)
    job = alice_api.get(f"/api/v1/models/job/{job_id}").json()
    assert job["status"] == "completed" and job["progress"] == 100
    model = alice_api.get(job["result_url"])
    assert model.status_code == 200


def test_downloads_work_over_a_real_server(finished_batch, alice_key, live_server):
    body = httpx.get(
        f"{live_server.url}/api/v1/download/{finished_batch}/all",
        headers={"Authorization": f"Bearer {alice_key}"},
    ).json()
    assert body["total_files"] == 3
    url = body["download_urls"][0]
    assert url.startswith(f"{live_server.url}/api/v1/download/direct/")
    response = httpx.get(url)  # no header: the signature is the permission
    assert response.status_code == 200 and len(response.content) == body["files"][0]["size"]


def test_another_users_session_gets_404_everywhere(bob, alice_api, finished_batch):
    job = alice_api.get(f"/api/v1/status/tasks/{finished_batch}/status").json()["files"][0]
    session = Client()
    session.force_login(bob)
    for path in [
        f"/api/v1/status/tasks/{finished_batch}/status",
        f"/api/v1/download/{finished_batch}/all",
        f"/api/v1/download/{finished_batch}/archive",
        f"/api/v1/download/{finished_batch}/chelsea.glb",
        f"/api/v1/models/job/{job['job_id']}",
    ]:
        assert session.get(path).status_code == 404, path


def test_names_with_double_dots_download_fine(alice_api, broker, worker):
    from tests.conftest import named

    response = alice_api.post(
        "/api/v1/upload/",
        {"files": [named((DATA_DIR / "chelsea.png").read_bytes(), "my..cat.png")]},
    )
    wait_for_jobs(broker, worker)
    status = alice_api.get(f"/api/v1/status/tasks/{response.json()['task_id']}/status").json()
    download = alice_api.get(status["files"][0]["download_url"])
    assert download.status_code == 200
    assert 'filename="my..cat.glb"' in download["Content-Disposition"]


def test_an_image_whose_file_expired_cannot_be_generated_again(alice_api, finished_batch):
    from apps.uploads.models import SourceImage

    image = SourceImage.objects.filter(batch_id=finished_batch).first()
    SourceImage.objects.filter(pk=image.pk).update(expired_at="2026-01-01T00:00:00Z")
    response = alice_api.post(
        "/api/v1/models/generate", {"file_id": str(image.pk)}, content_type="application/json"
    )
    assert response.status_code == 404
