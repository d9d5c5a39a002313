"""The embedded mode of `make run`: SQLite, in-process workers, no Redis, no PostgreSQL."""

from __future__ import annotations

import io
import time

import httpx
import pytest
import trimesh

from tests.conftest import DATA
from tests.servers import Server, embedded_env, manage

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("embedded")
    env = embedded_env(data_dir)
    migrate = manage("migrate", "--noinput", env=env)
    assert migrate.returncode == 0, migrate.stderr
    admin = manage("ensure_admin", "--url", "http://127.0.0.1:8000/", env=env)
    assert admin.returncode == 0, admin.stderr
    server = Server(env, data_dir / "server.log")
    yield server, env, admin.stdout, data_dir
    server.stop()


def test_it_says_how_to_sign_in(embedded):
    _, _, first_run_output, data_dir = embedded
    assert "Sign in at http://127.0.0.1:8000/accounts/login/ as user 'admin'" in first_run_output
    password = (data_dir / "initial-admin-password").read_text().strip()
    assert f"password '{password}'" in first_run_output


def test_it_serves_health_and_the_home_page(embedded):
    server, *_ = embedded
    assert httpx.get(f"{server.url}/health").json()["status"] == "healthy"
    home = httpx.get(f"{server.url}/")
    assert home.status_code == 200
    assert "Turn photos into 3D models" in home.text
    css = httpx.get(f"{server.url}/static/css/site.css")
    assert css.status_code == 200 and "--accent" in css.text


def test_its_detailed_health_sees_the_in_process_workers(embedded):
    server, *_ = embedded
    for _ in range(50):
        body = httpx.get(f"{server.url}/api/v1/health/detailed").json()
        if body["components"]["workers"]["alive"]:
            break
        time.sleep(0.2)
    assert body["mode"] == "embedded"
    assert body["components"]["workers"]["status"] == "healthy"
    assert body["components"]["database"]["engine"] == "sqlite"


def test_an_upload_becomes_a_model_with_the_in_process_workers(embedded):
    server, env, *_ = embedded
    created = manage("create_api_key", "--user", "carol", "--name", "cli", "--create-user", env=env)
    assert created.returncode == 0, created.stderr
    headers = {"Authorization": f"Bearer {created.stdout.strip()}"}
    upload = httpx.post(
        f"{server.url}/api/v1/upload/",
        headers=headers,
        files=[("files", ("chelsea.png", (DATA / "chelsea.png").read_bytes(), "image/png"))],
        data={"face_limit": "2000"},
        timeout=30,
    )
    assert upload.status_code == 200, upload.text
    task_id = upload.json()["task_id"]
    for _ in range(300):
        status = httpx.get(
            f"{server.url}/api/v1/status/tasks/{task_id}/status", headers=headers
        ).json()
        if status["status"] in {"completed", "failed"}:
            break
        time.sleep(0.2)
    assert status["status"] == "completed", status
    model = httpx.get(f"{server.url}{status['files'][0]['download_url']}", headers=headers)
    assert model.headers["content-type"] == "model/gltf-binary"
    mesh = trimesh.load(io.BytesIO(model.content), file_type="glb", force="mesh")
    assert 0 < len(mesh.faces) <= 2000


def test_live_progress_streams_with_the_in_process_workers(embedded):
    from tests.sse import read_stream

    server, env, *_ = embedded
    created = manage("create_api_key", "--user", "erin", "--name", "sse", "--create-user", env=env)
    headers = {"Authorization": f"Bearer {created.stdout.strip()}"}
    upload = httpx.post(
        f"{server.url}/api/v1/upload/",
        headers=headers,
        timeout=30,
        files=[
            ("files", (name, (DATA / name).read_bytes(), "image/png"))
            for name in ("coffee.png", "logo.png")
        ],
    )
    events = read_stream(f"{server.url}{upload.json()['stream_url']}")
    assert events[-1].name == "task_completed"
    assert events[-1].data["result"]["successful_files"] == 2
    assert {e.data["status"] for e in events if e.name == "file_update"} >= {
        "queued",
        "processing",
        "completed",
    }


def test_a_job_orphaned_by_a_stopped_server_finishes_after_a_restart(embedded, tmp_path):
    import sqlite3

    server, env, _, data_dir = embedded
    created = manage("create_api_key", "--user", "fay", "--name", "x", "--create-user", env=env)
    headers = {"Authorization": f"Bearer {created.stdout.strip()}"}
    upload = httpx.post(
        f"{server.url}/api/v1/upload/",
        headers=headers,
        timeout=30,
        files=[("files", ("rocket.jpg", (DATA / "rocket.jpg").read_bytes(), "image/jpeg"))],
    ).json()
    task = f"/api/v1/status/tasks/{upload['task_id']}/status"
    for _ in range(100):
        if httpx.get(f"{server.url}{task}", headers=headers).json()["status"] == "completed":
            break
        time.sleep(0.1)
    server.stop()
    # As if the process had died while running the job: it is left "running".
    with sqlite3.connect(data_dir / "db.sqlite3") as db:
        db.execute(
            "UPDATE jobs_job SET status='running', stage='generating', progress=40"
            " WHERE batch_id=?",
            (upload["task_id"].replace("-", ""),),
        )
    restarted = Server(env, tmp_path / "restarted.log")
    try:
        for _ in range(100):
            status = httpx.get(f"{restarted.url}{task}", headers=headers).json()
            if status["status"] == "completed":
                break
            time.sleep(0.1)
        assert status["status"] == "completed"
        assert status["files"][0]["status"] == "completed"
    finally:
        restarted.stop()
