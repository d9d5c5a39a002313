"""The ``image2model`` command end to end, as a user runs it: a subprocess with the server URL
and the key in the environment, against a live server and a real worker."""

from __future__ import annotations

import hashlib
import json
import uuid

import pytest
from conftest import photo

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def test_upload_wait_out_then_status_list_download(cli, start_worker, tmp_path):
    start_worker()
    out = tmp_path / "models"
    run = cli(
        "upload",
        str(photo("horse.png")),
        str(photo("rocket.jpg")),
        "--generator",
        "relief",
        "--param",
        "face_limit=600",
        "--wait",
        "--out",
        str(out),
    )
    assert run.returncode == 0, run.stderr
    assert sorted(p.name for p in out.iterdir()) == ["horse.glb", "rocket.glb"]
    assert f"saved {out / 'horse.glb'}" in run.stdout
    assert "completed" in run.stdout
    batch_id = run.stdout.split()[1]
    uuid.UUID(batch_id)

    status = cli("status", batch_id, "--json")
    assert status.returncode == 0, status.stderr
    body = json.loads(status.stdout)
    assert body["status"] == "completed" and len(body["jobs"]) == 2
    job = body["jobs"][0]
    model = job["artifacts"][0]
    assert hashlib.sha256((out / model["filename"]).read_bytes()).hexdigest() == model["sha256"]

    human = cli("status", job["id"])
    assert human.returncode == 0 and f"job {job['id']}  succeeded" in human.stdout

    listed = cli("list")
    assert listed.returncode == 0 and batch_id in listed.stdout and "2/2" in listed.stdout
    jobs = cli("list", "--jobs", "--batch-id", batch_id, "--json")
    assert {j["file_name"] for j in json.loads(jobs.stdout)} == {"horse.png", "rocket.jpg"}

    again = tmp_path / "again"
    download = cli("download", batch_id, "--out", str(again))
    assert download.returncode == 0, download.stderr
    assert sorted(p.name for p in again.iterdir()) == ["horse.glb", "rocket.glb"]
    assert (again / "horse.glb").read_bytes() == (out / "horse.glb").read_bytes()

    finished = cli("cancel", job["id"])
    assert finished.returncode == 1
    assert finished.stderr.startswith("error: ") and "code NOT_CANCELABLE" in finished.stderr


def test_upload_without_wait_then_cancel(cli, broker):
    run = cli("upload", str(photo("horse.png")), "--generator", "relief", "--json")
    assert run.returncode == 0, run.stderr
    batch = json.loads(run.stdout)
    assert batch["status"] == "queued"
    assert f"image2model status {batch['id']}" in run.stderr

    cancel = cli("cancel", batch["id"])
    assert cancel.returncode == 0, cancel.stderr
    assert f"cancel: batch {batch['id']} is now canceled" in cancel.stdout
    status = cli("status", batch["id"], "--json")
    assert json.loads(status.stdout)["status"] == "canceled"


def test_a_failed_batch_exits_1(cli, start_worker, monkeypatch):
    from apps.jobs.providers.base import GenerationError
    from apps.jobs.providers.relief import ReliefGenerator

    def broken(self, image_path, params, context):
        raise GenerationError("NO_SUBJECT", "No subject found in the image.")

    monkeypatch.setattr(ReliefGenerator, "run", broken)  # the worker runs in this process
    start_worker()
    run = cli("upload", str(photo("horse.png")), "--generator", "relief", "--wait")
    assert run.returncode == 1
    assert "ended failed" in run.stderr and "No subject found in the image." in run.stdout


def test_generators(cli):
    run = cli("generators")
    assert run.returncode == 0, run.stderr
    assert "relief" in run.stdout and "--param face_limit=<integer>" in run.stdout
    as_json = json.loads(cli("generators", "--json").stdout)
    assert "relief" in {g["id"] for g in as_json}


def test_errors_exit_with_their_codes(cli, server, tmp_path):
    bad_key = cli("list", env={"IMAGE2MODEL_API_KEY": "i2m_wrong_key"})
    assert bad_key.returncode == 3
    assert (
        bad_key.stderr.startswith("error: ") and "(code UNAUTHORIZED, request id " in bad_key.stderr
    )

    missing = cli("status", str(uuid.uuid4()))
    assert missing.returncode == 4 and "code NOT_FOUND" in missing.stderr

    no_url = cli("generators", env={"IMAGE2MODEL_URL": None})
    assert no_url.returncode == 2 and "IMAGE2MODEL_URL" in no_url.stderr
    flag_url = cli("--url", server.url, "generators", env={"IMAGE2MODEL_URL": None})
    assert flag_url.returncode == 0, flag_url.stderr

    no_key = cli("generators", env={"IMAGE2MODEL_API_KEY": None})
    assert no_key.returncode == 3 and "IMAGE2MODEL_API_KEY" in no_key.stderr

    assert cli("upload", str(tmp_path / "nope.jpg")).returncode == 2
    assert cli("upload").returncode == 2  # argparse: PHOTO is required
    assert cli("bogus").returncode == 2
    bad_param = cli(
        "upload", str(photo("horse.png")), "--generator", "relief", "-p", "face_limit=1"
    )
    assert bad_param.returncode == 2 and "face_limit" in bad_param.stderr

    unreachable = cli("--url", "http://127.0.0.1:9", "--retries", "0", "generators")
    assert unreachable.returncode == 5 and unreachable.stderr.startswith("error: ")
