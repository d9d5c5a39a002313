"""Live streams through real daphne processes, the real channels_redis layer and a real worker."""

from __future__ import annotations

import asyncio
import json
import threading

import dramatiq
import httpx
import pytest
import redis
import websockets.sync.client
from django.conf import settings as django_settings

from apps.jobs.models import Job, JobEvent
from tests.conftest import sample
from tests.servers import Server, services_env
from tests.sse import parse, read_stream

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture(scope="module")
def server_media(tmp_path_factory):
    return tmp_path_factory.mktemp("stream-media")


def server_env(media) -> dict[str, str]:
    return services_env(media, SSE_HEARTBEAT_SECONDS="1", STREAM_POLL_SECONDS="0.5")


@pytest.fixture(scope="module")
def servers(django_db_setup, django_db_blocker, server_media, tmp_path_factory):
    """Two daphne processes on the test database and the test Redis prefix."""
    logs = tmp_path_factory.mktemp("stream-logs")
    with django_db_blocker.unblock():
        env = server_env(server_media)
    started = [Server(env, logs / "a.log"), Server(env, logs / "b.log")]
    yield started
    for server in started:
        server.stop()


@pytest.fixture
def media_root(settings, server_media):
    settings.MEDIA_ROOT = server_media  # the servers and the worker share the files
    return server_media


def upload(client, names):
    response = client.post("/api/v1/upload/", {"files": [sample(n) for n in names]})
    assert response.status_code == 200, response.content
    return response.json()


def bearer(key):
    return {"Authorization": f"Bearer {key}"}


class Recorder(threading.Thread):
    """Reads one stream in the background until it ends."""

    def __init__(self, url, headers=None):
        super().__init__(daemon=True)
        self.url, self.headers, self.events, self.error = url, headers, [], None
        self.connected = threading.Event()

    def run(self):
        try:
            with httpx.stream("GET", self.url, headers=self.headers or {}, timeout=90) as response:
                assert response.status_code == 200
                self.connected.set()
                for event in parse(response.iter_lines()):
                    self.events.append(event)
        except Exception as error:  # reported by the test
            self.error = error
            self.connected.set()


def log_of(batch_id) -> list[int]:
    return list(
        JobEvent.objects.filter(batch_id=batch_id)
        .order_by("batch_seq")
        .values_list("batch_seq", flat=True)
    )


def assert_matches_the_log(events, batch_id):
    updates = [e for e in events if e.name == "file_update"]
    assert [int(e.id) for e in updates] == log_of(batch_id)
    for update in updates:
        stored = JobEvent.objects.get(batch_id=batch_id, batch_seq=int(update.id)).payload
        assert update.data["job_id"] == stored["job_id"] and update.data["stage"] == stored["stage"]


def test_a_batch_streams_per_file_progress_live_and_completes(
    servers, alice_api, alice_key, start_worker
):
    batch = upload(alice_api, ["chelsea.png", "coffee.png", "rocket.jpg"])
    recorder = Recorder(
        f"{servers[0].url}/api/v1/status/tasks/{batch['task_id']}/stream", bearer(alice_key)
    )
    recorder.start()
    assert recorder.connected.wait(30) and recorder.error is None
    start_worker()
    recorder.join(90)
    assert not recorder.is_alive() and recorder.error is None
    events = recorder.events
    assert events[-1].name == "task_completed"
    result = events[-1].data["result"]
    assert result["successful_files"] == 3 and result["status"] == "completed"
    assert all(r["download_url"] for r in result["results"])
    assert_matches_the_log(events, batch["batch_id"])
    per_file = {}
    for event in events:
        if event.name == "file_update":
            per_file.setdefault(event.data["filename"], []).append(event.data)
    assert set(per_file) == {"chelsea.png", "coffee.png", "rocket.jpg"}
    for updates in per_file.values():
        statuses = [u["status"] for u in updates]
        assert statuses[0] == "queued" and statuses[-1] == "completed" and "processing" in statuses
        percents = [u["progress"] for u in updates if u["status"] == "processing" and u["progress"]]
        assert len(set(percents)) >= 2  # real intermediate progress, not just start and end
    progress = [e.data["progress"] for e in events if e.name == "task_progress"]
    assert progress == sorted(progress) and progress[-1] == 100


def test_a_batch_whose_files_all_fail_ends_with_task_failed(
    servers, alice_api, alice_key, start_worker, monkeypatch
):
    from apps.jobs.providers.base import GenerationError
    from apps.jobs.providers.relief import ReliefGenerator

    def broken(self, image_path, params, context):
        raise GenerationError("NO_SUBJECT", "No subject found in the image.")

    monkeypatch.setattr(ReliefGenerator, "run", broken)
    batch = upload(alice_api, ["chelsea.png", "coffee.png"])
    start_worker()
    events = read_stream(
        f"{servers[1].url}/api/v1/status/tasks/{batch['task_id']}/stream", headers=bearer(alice_key)
    )
    assert events[-1].name == "task_failed"
    assert events[-1].data["result"]["failed_files"] == 2
    assert {r["error"] for r in events[-1].data["result"]["results"]} == {
        "No subject found in the image."
    }


def test_either_web_process_serves_the_stream(servers, alice_api, alice_key, start_worker):
    batch = upload(alice_api, ["chelsea.png", "coffee.png"])
    recorders = [
        Recorder(f"{server.url}/api/v1/status/tasks/{batch['task_id']}/stream", bearer(alice_key))
        for server in servers
    ]
    for recorder in recorders:
        recorder.start()
        assert recorder.connected.wait(30)
    start_worker()
    for recorder in recorders:
        recorder.join(90)
        assert recorder.error is None and recorder.events[-1].name == "task_completed"
        assert_matches_the_log(recorder.events, batch["batch_id"])
    assert [(e.name, e.id) for e in recorders[0].events] == [
        (e.name, e.id) for e in recorders[1].events
    ]


def test_a_reconnect_with_last_event_id_misses_nothing_and_repeats_nothing(
    servers, alice_api, alice_key, start_worker
):
    batch = upload(alice_api, ["chelsea.png", "coffee.png", "astronaut.png"])
    url = f"{servers[0].url}/api/v1/status/tasks/{batch['task_id']}/stream"
    start_worker()
    first = read_stream(
        url,
        headers=bearer(alice_key),
        stop_after=lambda e: e.name == "file_update" and e.data["status"] == "processing",
    )
    last_id = first[-1].id
    second = read_stream(url, headers={**bearer(alice_key), "Last-Event-ID": str(last_id)})
    ids = [int(e.id) for e in first + second if e.name == "file_update"]
    assert ids == sorted(set(ids)), "duplicates or disorder"
    assert second[-1].name == "task_completed"
    assert_matches_the_log(first + second, batch["batch_id"])


def test_a_finished_batch_answers_with_its_history_then_closes(
    servers, alice_api, alice_key, start_worker
):
    from tests.conftest import wait_for_jobs

    batch = upload(alice_api, ["chelsea.png"])
    worker = start_worker()
    wait_for_jobs(dramatiq.get_broker(), worker)
    url = f"{servers[0].url}/api/v1/status/tasks/{batch['task_id']}/stream"
    events = read_stream(url, headers=bearer(alice_key))
    assert events[-1].name == "task_completed"
    assert_matches_the_log(events, batch["batch_id"])
    # The client already had everything: nothing is repeated, the stream just ends.
    assert read_stream(url, headers={**bearer(alice_key), "Last-Event-ID": events[-1].id}) == []
    # Cut off between the frames of the last event: exactly the missing frames come.
    seq = events[-1].id.split(".")[0]
    after_update = read_stream(url, headers={**bearer(alice_key), "Last-Event-ID": seq})
    assert [(e.name, e.id) for e in after_update] == [
        ("task_progress", f"{seq}.1"),
        ("task_completed", f"{seq}.2"),
    ]
    after_progress = read_stream(url, headers={**bearer(alice_key), "Last-Event-ID": f"{seq}.1"})
    assert [(e.name, e.id) for e in after_progress] == [("task_completed", f"{seq}.2")]


def test_the_job_stream_carries_one_jobs_events(servers, alice_api, alice_key, start_worker):
    batch = upload(alice_api, ["chelsea.png", "coffee.png"])
    job_id = batch["uploaded_files"][1]["task_id"]
    start_worker()
    events = read_stream(
        f"{servers[0].url}/api/v1/status/jobs/{job_id}/stream", headers=bearer(alice_key)
    )
    updates = [e for e in events if e.name == "file_update"]
    assert {e.data["job_id"] for e in updates} == {job_id}
    assert [int(e.id) for e in updates] == list(
        Job.objects.get(pk=job_id).events.order_by("seq").values_list("seq", flat=True)
    )
    assert events[-1].name == "task_completed"


def test_heartbeats_flow_and_the_timeout_closes_the_stream(servers, alice_api, alice_key, broker):
    batch = upload(alice_api, ["chelsea.png"])  # no worker: it stays queued
    events = read_stream(
        f"{servers[0].url}/api/v1/status/tasks/{batch['task_id']}/stream?timeout=3",
        headers=bearer(alice_key),
    )
    names = [e.name for e in events]
    assert "heartbeat" in names and names[-1] == "connection_timeout"
    assert all(e.id is None for e in events if e.name in {"heartbeat", "connection_timeout"})


def test_the_stream_url_of_the_upload_works_without_a_header(servers, alice_api, start_worker):
    batch = upload(alice_api, ["chelsea.png"])
    start_worker()
    events = read_stream(f"{servers[0].url}{batch['stream_url']}")
    assert events[-1].name == "task_completed"


def test_stream_errors_answer_in_the_envelope(servers, alice_api, alice_key, bob_key, broker):
    batch = upload(alice_api, ["chelsea.png"])
    other = upload(alice_api, ["coffee.png"])
    base = f"{servers[0].url}/api/v1/status/tasks"
    cases = [
        (f"{base}/not-a-uuid/stream", bearer(alice_key), 400),
        (f"{base}/{batch['task_id']}/stream", {}, 403),
        (f"{base}/{batch['task_id']}/stream", bearer("i2m_nope_nope"), 403),
        (f"{base}/{batch['task_id']}/stream", bearer(bob_key), 404),
        (f"{base}/{batch['task_id']}/stream?timeout=0", bearer(alice_key), 422),
        # A stream token is good for its own batch only.
        (
            f"{base}/{other['task_id']}/stream?token={batch['stream_url'].split('token=')[1]}",
            {},
            403,
        ),
    ]
    for url, headers, status in cases:
        response = httpx.get(url, headers=headers, timeout=10)
        assert response.status_code == status, (url, response.text)
        assert response.json()["error"] is True and response.json()["status_code"] == status


def test_the_websocket_sends_the_same_events(servers, alice_api, start_worker):
    batch = upload(alice_api, ["chelsea.png", "coffee.png"])
    start_worker()
    ws_url = servers[1].url.replace("http://", "ws://") + batch["websocket_url"]
    messages = []
    with websockets.sync.client.connect(ws_url, open_timeout=10) as socket:
        try:
            while True:
                messages.append(json.loads(socket.recv(timeout=60)))
        except websockets.exceptions.ConnectionClosedOK:
            pass
    assert messages[-1]["event"] == "task_completed"
    updates = [int(m["id"]) for m in messages if m["event"] == "file_update"]
    assert updates == log_of(batch["batch_id"])


def test_a_websocket_for_someone_elses_batch_is_refused(servers, alice_api, bob_key, broker):
    batch = upload(alice_api, ["chelsea.png"])
    ws_url = servers[0].url.replace("http://", "ws://") + f"/ws/batches/{batch['batch_id']}/"
    with pytest.raises(websockets.exceptions.InvalidStatus):
        websockets.sync.client.connect(ws_url, additional_headers=bearer(bob_key), open_timeout=10)


async def _many_streams(url: str, headers: dict, count: int, opened: threading.Event):
    limits = httpx.Limits(max_connections=count + 10, max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        connected = 0

        async def one():
            nonlocal connected
            async with client.stream("GET", url, headers=headers) as response:
                connected += 1
                if connected == count:
                    opened.set()
                lines = [line async for line in response.aiter_lines()]
            return [e.name for e in parse(iter(lines))]

        return await asyncio.gather(*(one() for _ in range(count)))


def test_two_hundred_streams_all_end_and_leave_nothing_behind(
    servers, alice_api, alice_key, start_worker
):
    batch = upload(alice_api, ["chelsea.png"])
    url = f"{servers[0].url}/api/v1/status/tasks/{batch['task_id']}/stream"
    opened = threading.Event()
    results = []
    reader = threading.Thread(
        target=lambda: results.extend(
            asyncio.run(_many_streams(url, bearer(alice_key), 200, opened))
        ),
        daemon=True,
    )
    reader.start()
    assert opened.wait(60), "not all 200 streams opened"
    client = redis.Redis.from_url(django_settings.CHANNELS_REDIS_URL)
    batch_hex = batch["batch_id"].replace("-", "")
    (group_key,) = client.keys(f"{django_settings.REDIS_PREFIX}:channels*group*batch-{batch_hex}")
    assert client.zcard(group_key) == 200
    start_worker()
    reader.join(120)
    assert len(results) == 200
    assert all(names and names[-1] == "task_completed" for names in results)
    metrics = httpx.get(f"{servers[0].url}/metrics").text
    assert 'image2model_open_streams{transport="sse"} 0.0' in metrics
    assert client.zcard(group_key) == 0  # every stream left the batch group


async def _connect_and_drop(url: str, headers: dict, count: int) -> int:
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:

        async def one() -> int:
            async with client.stream("GET", url, headers=headers) as response:
                async for _ in response.aiter_lines():
                    break  # first line read: the stream is live; then hang up mid-stream
            return response.status_code

        statuses = await asyncio.gather(*(one() for _ in range(count)))
    return statuses.count(200)


def test_clients_that_hang_up_mid_stream_leave_nothing_behind(
    servers, alice_api, alice_key, broker
):
    import time

    batch = upload(alice_api, ["chelsea.png"])  # no worker: every stream stays open until dropped
    url = f"{servers[1].url}/api/v1/status/tasks/{batch['task_id']}/stream"
    connected = sum(asyncio.run(_connect_and_drop(url, bearer(alice_key), 100)) for _ in range(10))
    assert connected == 1000  # a thousand connect/hang-up cycles
    metric = 'image2model_open_streams{transport="sse"} 0.0'
    for _ in range(50):  # disconnects are processed asynchronously by the server
        if metric in httpx.get(f"{servers[1].url}/metrics").text:
            break
        time.sleep(0.1)
    assert metric in httpx.get(f"{servers[1].url}/metrics").text
    client = redis.Redis.from_url(django_settings.CHANNELS_REDIS_URL)
    batch_hex = batch["batch_id"].replace("-", "")
    keys = client.keys(f"{django_settings.REDIS_PREFIX}:channels*group*batch-{batch_hex}")
    assert all(client.zcard(key) == 0 for key in keys)


def test_streams_check_host_and_method_and_echo_the_request_id(
    servers, alice_api, alice_key, broker
):
    batch = upload(alice_api, ["chelsea.png"])
    url = f"{servers[0].url}/api/v1/status/tasks/{batch['task_id']}/stream?timeout=1"
    evil = httpx.get(url, headers={**bearer(alice_key), "Host": "evil.example"}, timeout=10)
    assert evil.status_code == 400 and evil.json()["message"] == "Invalid Host header"
    posted = httpx.post(url, headers=bearer(alice_key), timeout=10)
    assert posted.status_code == 405 and posted.headers["allow"] == "GET, HEAD"
    ok = httpx.get(url, headers={**bearer(alice_key), "X-Request-ID": "req-12345678"}, timeout=10)
    assert ok.status_code == 200 and ok.headers["x-request-id"] == "req-12345678"


def test_a_job_gets_its_own_stream_link(servers, alice_api, start_worker):
    batch = upload(alice_api, ["chelsea.png"])
    job_id = batch["uploaded_files"][0]["task_id"]
    link = alice_api.get(f"/api/v1/models/job/{job_id}").json()["stream_url"]
    start_worker()
    events = read_stream(f"{servers[0].url}{link}")
    assert events[-1].name == "task_completed"
    other = upload(alice_api, ["coffee.png"])["uploaded_files"][0]["task_id"]
    token = link.split("token=")[1]
    refused = httpx.get(f"{servers[0].url}/api/v1/status/jobs/{other}/stream?token={token}")
    assert refused.status_code == 403


def test_a_batch_retried_after_it_finished_streams_on(servers, alice_api, alice_key, start_worker):
    from apps.jobs.services import job_cancel, job_retry

    batch = upload(alice_api, ["chelsea.png"])
    job = Job.objects.get(batch_id=batch["batch_id"])
    job_cancel(job=job)
    url = f"{servers[0].url}/api/v1/status/tasks/{batch['task_id']}/stream"
    first = read_stream(url, headers=bearer(alice_key))
    assert first[-1].name == "task_failed"  # nothing succeeded: canceled
    job_retry(job=job)
    start_worker()
    resumed = read_stream(url, headers={**bearer(alice_key), "Last-Event-ID": first[-1].id})
    assert resumed[-1].name == "task_completed"
    assert resumed[-1].data["result"]["successful_files"] == 1
    whole = read_stream(url, headers=bearer(alice_key))  # a fresh page after the retry
    assert [e.name for e in whole].count("task_completed") + [e.name for e in whole].count(
        "task_failed"
    ) == 1
    assert whole[-1].name == "task_completed"
    assert_matches_the_log(whole, batch["batch_id"])
