"""POST /api/v1/upload/: the old contract, and every bad input refused with nothing stored."""

from __future__ import annotations

import io
import json
import struct
import zlib

import pytest
from PIL import Image

from apps.jobs.models import Job, JobEvent
from apps.uploads.models import Batch, SourceImage
from tests.conftest import DATA, named, sample

pytestmark = pytest.mark.django_db

UPLOAD = "/api/v1/upload/"


def png_bytes(size=(8, 8), color=(200, 40, 40)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "PNG")
    return buffer.getvalue()


def files_on_disk(media_root) -> list:
    return [path for path in media_root.rglob("*") if path.is_file()]


@pytest.fixture
def nothing_stored(media_root):
    """Asserts, after the test, that no row and no file was left behind."""
    before = (Batch.objects.count(), SourceImage.objects.count(), Job.objects.count())
    yield
    assert (Batch.objects.count(), SourceImage.objects.count(), Job.objects.count()) == before
    assert JobEvent.objects.count() == 0
    assert files_on_disk(media_root) == []


def post(client, files, **data):
    return client.post(UPLOAD, {"files": files, **data})


def assert_envelope(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.content
    body = response.json()
    assert body["error"] is True
    assert body["status_code"] == status
    assert body["error_code"] == (code or f"HTTP_{status}")
    assert isinstance(body["message"], str) and body["message"]
    assert isinstance(body["details"], dict)
    return body


def test_it_accepts_a_batch_and_answers_in_the_old_shape(alice_api, media_root, broker):
    response = post(alice_api, [sample("chelsea.png"), sample("rocket.jpg")], face_limit=3000)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["batch_id"] == body["job_id"] == body["task_id"]
    assert body["total_files"] == 2
    assert body["face_limit"] == 3000
    assert body["status"] == "uploaded"
    assert body["message"] == "Files uploaded successfully, processing started"
    assert [f["filename"] for f in body["uploaded_files"]] == ["chelsea.png", "rocket.jpg"]
    rocket = body["uploaded_files"][1]
    assert rocket["content_type"] == "image/jpeg"
    assert rocket["file_size"] == (DATA / "rocket.jpg").stat().st_size
    assert rocket["status"] == "uploaded"
    job = Job.objects.get(pk=rocket["task_id"])
    assert job.params["face_limit"] == 3000 and job.status == "queued"
    # Stored under ids, never under the client's name.
    stored = sorted(p.relative_to(media_root).as_posix() for p in files_on_disk(media_root))
    assert stored == sorted(
        f"uploads/{body['batch_id']}/{f['file_id']}.{ext}"
        for f, ext in zip(body["uploaded_files"], ["png", "jpg"], strict=True)
    )


def test_it_enqueues_one_message_per_job_after_commit(
    alice_api, broker, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = post(alice_api, [sample("chelsea.png"), sample("coffee.png")])
    assert response.status_code == 200
    assert broker.client.llen(f"{broker.namespace}:generation") == 2


def test_the_type_comes_from_the_bytes_not_the_name(alice_api, broker):
    response = post(alice_api, [named((DATA / "chelsea.png").read_bytes(), "photo.jpg")])
    assert response.status_code == 200
    assert response.json()["uploaded_files"][0]["content_type"] == "image/png"
    image = SourceImage.objects.get()
    assert image.file.name.endswith(".png") and image.original_filename == "photo.jpg"


def test_output_names_follow_the_original_and_are_unique(alice_api, broker):
    response = post(alice_api, [sample("chelsea.png"), named(png_bytes(), "chelsea.png")])
    assert response.status_code == 200
    stems = list(SourceImage.objects.order_by("position").values_list("output_stem", flat=True))
    assert stems == ["chelsea", "chelsea-2"]


def test_the_one_file_endpoint_answers_the_same_shape(alice_api, broker):
    response = alice_api.post("/api/v1/upload/image", {"file": sample("coffee.png")})
    assert response.status_code == 200, response.content
    assert response.json()["total_files"] == 1


def test_the_slashless_path_redirects_keeping_the_method(alice_api):
    response = alice_api.post("/api/v1/upload", {"files": [sample("chelsea.png")]})
    assert response.status_code == 307
    assert response["Location"] == "/api/v1/upload/"


# Authentication ---------------------------------------------------------------------------


def test_it_refuses_a_missing_key(client, nothing_stored):
    body = assert_envelope(post(client, [sample("chelsea.png")]), 403)
    assert body["message"] == "Not authenticated"


@pytest.mark.parametrize("header", ["Bearer i2m_0000_nope", "Bearer garbage", "Bearer "])
def test_it_refuses_an_invalid_key(client, alice_key, header, nothing_stored):
    response = client.post(UPLOAD, {"files": [sample("chelsea.png")]}, HTTP_AUTHORIZATION=header)
    assert assert_envelope(response, 403)["message"] in {"Invalid API key", "Not authenticated"}


def test_a_tampered_key_of_a_real_prefix_is_invalid(client, alice_key, nothing_stored):
    response = client.post(
        UPLOAD, {"files": [sample("chelsea.png")]}, HTTP_AUTHORIZATION=f"Bearer {alice_key}x"
    )
    assert assert_envelope(response, 403)["message"] == "Invalid API key"


def test_the_bearer_scheme_is_case_insensitive(client, alice_key, broker):
    response = client.post(
        UPLOAD, {"files": [sample("chelsea.png")]}, HTTP_AUTHORIZATION=f"bearer {alice_key}"
    )
    assert response.status_code == 200


# Bad input --------------------------------------------------------------------------------


def test_no_files_is_a_validation_error(alice_api, nothing_stored):
    body = assert_envelope(alice_api.post(UPLOAD, {"face_limit": "5"}), 422, "VALIDATION_ERROR")
    assert body["message"] == "Request validation failed"
    fields = [error["field"] for error in body["details"]["validation_errors"]]
    assert any("files" in field for field in fields)


def test_more_than_the_maximum_is_refused(alice_api, settings, nothing_stored):
    files = [named(png_bytes(), f"f{i}.png") for i in range(settings.UPLOAD_MAX_FILES + 1)]
    body = assert_envelope(post(alice_api, files), 400)
    assert body["message"] == (
        f"Too many files. Maximum allowed: {settings.UPLOAD_MAX_FILES}, "
        f"received: {settings.UPLOAD_MAX_FILES + 1}"
    )


@pytest.mark.parametrize(
    ("data", "name", "problem"),
    [
        (b"", "empty.png", "file is empty"),
        (b"just some text, not a photo\n" * 20, "notes.jpg", "not a supported image"),
        (
            b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n",
            "paper.jpg",
            "not a supported image",
        ),
        (
            b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00,"
            b"\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;",
            "anim.gif",
            "unsupported image format GIF",
        ),
    ],
)
def test_it_refuses_what_is_not_a_supported_image(alice_api, data, name, problem, nothing_stored):
    body = assert_envelope(post(alice_api, [named(data, name)]), 400)
    assert body["message"].startswith("File validation failed")
    assert f"{name}: {problem}" in body["message"]
    assert body["details"]["errors"][0]["filename"] == name


def test_it_refuses_a_truncated_jpeg(alice_api, nothing_stored):
    data = (DATA / "rocket.jpg").read_bytes()
    body = assert_envelope(post(alice_api, [named(data[: len(data) // 2], "rocket.jpg")]), 400)
    assert "rocket.jpg: image data is corrupt or truncated" in body["message"]


def test_one_bad_file_refuses_the_whole_batch(alice_api, nothing_stored):
    body = assert_envelope(post(alice_api, [sample("chelsea.png"), named(b"nope", "x.png")]), 400)
    assert [e["filename"] for e in body["details"]["errors"]] == ["x.png"]


def test_a_file_over_the_size_limit_is_413(alice_api, settings, nothing_stored):
    settings.UPLOAD_MAX_FILE_SIZE = 100_000
    body = assert_envelope(post(alice_api, [sample("coffee.png")]), 413)
    assert "coffee.png: file is larger than the" in body["message"]


def test_an_image_over_the_pixel_limit_is_refused(alice_api, settings, nothing_stored):
    settings.UPLOAD_MAX_PIXELS = 100_000
    body = assert_envelope(post(alice_api, [sample("astronaut.png")]), 400)
    assert "astronaut.png: image is 512x512 pixels" in body["message"]


def png_bomb(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height 1-bit pixels of zeros."""
    row = b"\x00" + b"\x00" * ((width + 7) // 8)
    compressor = zlib.compressobj(9)
    data = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
    )


def test_it_refuses_a_decompression_bomb(alice_api, nothing_stored):
    bomb = png_bomb(30_000, 30_000)  # 900 megapixels in about 100 KB
    assert len(bomb) < 1_000_000
    body = assert_envelope(post(alice_api, [named(bomb, "bomb.png")]), 400)
    assert "bomb.png:" in body["message"] and "pixels" in body["message"]


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("../../etc/evil.png", "path separators"),
        ("..\\..\\evil.png", "path separators"),
        ("/abs/evil.png", "path separators"),
        ("bell\x07.png", "control characters"),
        ("new\nline.png", "control characters"),
    ],
)
def test_it_refuses_path_tricks_and_control_characters_in_names(
    alice_api, name, problem, nothing_stored
):
    # Built by hand: Django's test client would trim the name to its last part itself.
    boundary = "----image2model-test"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        + png_bytes()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    response = alice_api.generic(
        "POST", UPLOAD, body, content_type=f"multipart/form-data; boundary={boundary}"
    )
    assert problem in assert_envelope(response, 400)["message"]


@pytest.mark.parametrize("face_limit", ["0", "-5"])
def test_a_face_limit_that_is_not_positive_is_refused(alice_api, face_limit, nothing_stored):
    body = assert_envelope(post(alice_api, [sample("chelsea.png")], face_limit=face_limit), 400)
    assert body["message"] == "face_limit must be a positive integer"


def test_a_face_limit_above_the_generator_maximum_is_refused(alice_api, nothing_stored):
    body = assert_envelope(post(alice_api, [sample("chelsea.png")], face_limit="999999999"), 400)
    assert body["message"] == "face_limit must be at most 200000 for relief"


def test_a_face_limit_that_is_not_a_number_is_a_validation_error(alice_api, nothing_stored):
    assert_envelope(
        post(alice_api, [sample("chelsea.png")], face_limit="many"), 422, "VALIDATION_ERROR"
    )


def test_an_unknown_model_is_refused(alice_api, nothing_stored):
    body = assert_envelope(post(alice_api, [sample("chelsea.png")], model="dall-e"), 400)
    assert body["message"].startswith("Unknown model 'dall-e'") and "relief" in body["message"]


@pytest.mark.parametrize("params", ["[1, 2]", "not json", "42", '"text"'])
def test_params_must_be_a_json_object(alice_api, params, nothing_stored):
    body = assert_envelope(
        post(alice_api, [sample("chelsea.png")], params=params), 422, "VALIDATION_ERROR"
    )
    assert body["details"]["validation_errors"][0]["field"] == "body -> params"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"relief_depth": 5}, "relief_depth"),
        ({"invert": "sometimes"}, "invert"),
        ({"background": "purple"}, "background"),
        ({"wings": 2}, "wings"),
    ],
)
def test_params_out_of_the_declaration_are_refused(alice_api, params, field, nothing_stored):
    body = assert_envelope(
        post(alice_api, [sample("chelsea.png")], params=json.dumps(params)), 422, "VALIDATION_ERROR"
    )
    assert body["details"]["validation_errors"][0]["field"] == f"params -> {field}"


def test_params_in_range_are_kept_with_defaults_filled(alice_api, broker):
    response = post(alice_api, [sample("chelsea.png")], params=json.dumps({"invert": True}))
    assert response.status_code == 200
    params = Job.objects.get().params
    assert params["invert"] is True and params["face_limit"] == 20000


def test_far_too_many_files_is_still_a_clear_400(alice_api, settings, nothing_stored):
    # Past Django's own file-count guard (it refuses before parsing every part).
    files = [
        named(png_bytes(), f"f{i}.png") for i in range(settings.DATA_UPLOAD_MAX_NUMBER_FILES + 1)
    ]
    body = assert_envelope(post(alice_api, files), 400)
    assert body["message"].startswith("Too many files. Maximum allowed:")
