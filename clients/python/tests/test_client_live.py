"""The client against a live server (daphne in services mode, the test database, Redis, a real
Dramatiq worker): the consumer side of docs/api-v2.md."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import socket
import threading
import uuid

import pytest
from conftest import photo

from image2model_client import (
    ApiError,
    AsyncClient,
    BadRequest,
    ChecksumMismatch,
    Client,
    Conflict,
    NotFound,
    RateLimited,
    Unauthorized,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

SMALL = {"face_limit": 600}


def ids(events):
    return [e.id for e in events]


def assert_gapless(events):
    """Batch streams number changes 1, 2, 3, ... and each change's events N, N.1, (N.2)."""
    changes = [int(e.id) for e in events if e.name == "file_update"]
    assert changes == list(range(1, len(changes) + 1))
    assert len(set(ids(events))) == len(events)


def sha256_of(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- create, follow, download --------------------------------------------------------------------


def test_a_batch_is_created_followed_to_the_end_and_downloaded(client, start_worker, tmp_path):
    batch = client.create_batch(
        [photo("horse.png"), photo("rocket.jpg")], generator="relief", params=SMALL
    )
    assert batch.status == "queued" and not batch.finished and not batch.replayed
    assert [j.file_name for j in batch.jobs] == ["horse.png", "rocket.jpg"]
    assert batch.params["face_limit"] == 600 and batch.generator == "relief"

    start_worker()
    events = list(client.follow_events(batch.id))
    assert events[-1].name == "task_completed"
    assert_gapless(events)
    assert {e.name for e in events} <= {"file_update", "task_progress", "task_completed"}

    done = client.get_batch(batch.id)
    assert done.status == "completed" and done.finished and done.progress == 100
    assert done.counts.succeeded == 2 and done.counts.total == 2
    for job in done.jobs:
        assert job.status == "succeeded" and len(job.models) == 1
        model = job.models[0]
        assert model.url and model.size and len(model.sha256 or "") == 64

    paths = client.download_batch(done, tmp_path / "models")
    assert sorted(p.name for p in paths) == ["horse.glb", "rocket.glb"]
    by_name = {a.filename: a for job in done.jobs for a in job.models}
    for path in paths:
        assert path.read_bytes()[:4] == b"glTF"
        assert sha256_of(path) == by_name[path.name].sha256
        assert path.stat().st_size == by_name[path.name].size
    assert not list((tmp_path / "models").glob("*.part"))

    one = client.download_job(done.jobs[0].id, tmp_path / "one")
    assert [p.name for p in one] == ["horse.glb"]


def test_a_download_whose_checksum_does_not_match_is_deleted_and_raised(
    client, start_worker, tmp_path
):
    batch = client.create_batch([photo("horse.png")], generator="relief", params=SMALL)
    start_worker()
    done = client.wait_for_batch(batch.id)
    model = done.jobs[0].models[0]

    wrong_hash = dataclasses.replace(model, sha256="0" * 64)
    with pytest.raises(ChecksumMismatch) as caught:
        client.download_artifact(wrong_hash, tmp_path)
    assert caught.value.expected == "0" * 64 and caught.value.actual == model.sha256
    wrong_size = dataclasses.replace(model, size=(model.size or 0) + 1)
    with pytest.raises(ChecksumMismatch, match="size"):
        client.download_artifact(wrong_size, tmp_path / "x.glb")
    assert list(tmp_path.iterdir()) == []  # neither the file nor a .part is left

    good = client.download_artifact(model, tmp_path)
    assert good == tmp_path / "horse.glb" and sha256_of(good) == model.sha256


def test_prefer_wait_answers_once_the_batch_has_finished(client, start_worker):
    start_worker()
    batch = client.create_batch([photo("horse.png")], generator="relief", params=SMALL, wait=60)
    assert batch.finished and batch.status == "completed"
    assert batch.jobs[0].models[0].sha256


def test_a_batch_links_its_zip_once_a_model_exists(client, start_worker, server, alice_key):
    """docs/api-v2.md: ``archive_url`` (with the key) once at least one model exists."""
    batch = client.create_batch([photo("horse.png")], generator="relief", params=SMALL)
    assert batch.archive_url is None and batch.raw["archive_url"] is None
    start_worker()
    client.wait_for_batch(batch.id)
    done = client.get_batch(batch.id)
    assert done.archive_url
    import httpx

    url = httpx.URL(server.url).join(done.archive_url)
    assert httpx.get(url, timeout=30).status_code in (401, 403)  # the archive needs the key
    answer = httpx.get(url, headers={"Authorization": f"Bearer {alice_key}"}, timeout=30)
    assert answer.status_code == 200 and answer.content[:2] == b"PK"


# --- idempotency ---------------------------------------------------------------------------------


def test_the_same_idempotency_key_answers_the_first_batch_again(client, broker):
    key = str(uuid.uuid4())
    files = [photo("horse.png")]
    first = client.create_batch(files, generator="relief", params=SMALL, idempotency_key=key)
    again = client.create_batch(files, generator="relief", params=SMALL, idempotency_key=key)
    assert again.id == first.id
    assert not first.replayed and again.replayed
    assert [b.id for b in client.list_batches()] == [first.id]

    with pytest.raises(Conflict) as caught:
        client.create_batch(
            files, generator="relief", params={"face_limit": 700}, idempotency_key=key
        )
    assert caught.value.code == "IDEMPOTENCY_KEY_REUSED"
    assert caught.value.status == 409 and caught.value.request_id

    other = client.create_batch(files, generator="relief", params=SMALL)  # a fresh key
    assert other.id != first.id


# --- events: reconnect and resume ----------------------------------------------------------------


class CuttingProxy(threading.Thread):
    """A TCP proxy in front of the server that can cut every open connection."""

    def __init__(self, target_port: int) -> None:
        super().__init__(daemon=True)
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.connections = 0
        self.open: list[socket.socket] = []
        self.lock = threading.Lock()

    def run(self) -> None:
        while True:
            try:
                downstream, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            with self.lock:
                self.connections += 1
                self.open += [downstream, upstream]
            for a, b in ((downstream, upstream), (upstream, downstream)):
                threading.Thread(target=self.pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        for s in (source, sink):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        with self.lock:
            for s in self.open:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
            self.open = []

    def stop(self) -> None:
        self.listener.close()
        self.cut()


def test_a_dropped_stream_resumes_with_last_event_id_missing_and_repeating_nothing(
    server, alice_key, client, start_worker, monkeypatch
):
    from apps.jobs.providers.relief import ReliefGenerator

    gate, original = threading.Event(), ReliefGenerator.run

    def gated(self, *args, **kwargs):  # the worker runs in this process: hold it mid-job
        gate.wait(60)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(ReliefGenerator, "run", gated)
    batch = client.create_batch(
        [photo("horse.png"), photo("rocket.jpg")], generator="relief", params=SMALL
    )
    proxy = CuttingProxy(server.port)
    proxy.start()
    received, cuts = [], 0
    try:
        with Client(proxy.url, alice_key) as through_proxy:
            for event in through_proxy.follow_events(batch.id):
                received.append(event)
                if event.id == "1.1" and cuts == 0:  # in the history; no worker yet
                    proxy.cut()
                    cuts += 1
                    start_worker()
                elif event.name == "file_update" and event.data["status"] != "queued" and cuts == 1:
                    proxy.cut()  # live, while the jobs are held: the stream is surely open
                    cuts += 1
                    gate.set()
    finally:
        gate.set()
        proxy.stop()
    assert cuts == 2 and proxy.connections == 3
    assert received[-1].name == "task_completed"
    assert_gapless(received)

    everything = list(client.follow_events(batch.id))  # the whole log, in one connection
    assert ids(received) == ids(everything)
    assert [e.data for e in received if e.name == "file_update"] == [
        e.data for e in everything if e.name == "file_update"
    ]

    resumed = list(client.follow_events(batch.id, last_event_id="2"))
    assert ids(resumed) == ids(everything)[ids(everything).index("2") + 1 :]
    assert list(client.follow_events(batch.id, last_event_id=everything[-1].id)) == []

    job = client.get_batch(batch.id).jobs[0]
    job_events = list(client.follow_events(job_id=job.id))
    assert job_events[-1].name == "task_completed"
    assert {e.data["job_id"] for e in job_events if e.name == "file_update"} == {job.id}


# --- lists ---------------------------------------------------------------------------------------


def test_lists_page_with_cursors_newest_first(client, broker):
    created = [
        client.create_batch([photo(name)], generator="relief", params=SMALL).id
        for name in ("horse.png", "rocket.jpg", "logo.png")
    ]
    first = client.list_batches_page(limit=2)
    assert [b.id for b in first.items] == created[::-1][:2] and first.next_cursor
    assert first.items[0].jobs == ()  # lists carry no jobs
    second = client.list_batches_page(limit=2, cursor=first.next_cursor)
    assert [b.id for b in second.items] == created[:1] and second.next_cursor is None
    assert [b.id for b in client.list_batches(limit=1)] == created[::-1]
    assert [b.id for b in client.list_batches(limit=2, status="queued")] == created[::-1]
    assert list(client.list_batches(status="completed")) == []

    jobs = list(client.list_jobs(limit=1))
    assert [j.batch_id for j in jobs] == created[::-1]
    only = list(client.list_jobs(batch_id=created[1]))
    assert [j.file_name for j in only] == ["rocket.jpg"]

    with pytest.raises(BadRequest) as caught:
        client.list_batches_page(cursor=first.next_cursor[:-2] + "xx")
    assert caught.value.code == "INVALID_CURSOR"


# --- cancel, retry, delete -----------------------------------------------------------------------


def test_cancel_retry_and_delete_jobs_and_batches(client, start_worker):
    batch = client.create_batch(
        [photo("horse.png"), photo("rocket.jpg")], generator="relief", params=SMALL
    )
    first, second = batch.jobs

    with pytest.raises(Conflict) as caught:
        client.delete_batch(batch.id)
    assert caught.value.code == "JOB_NOT_FINISHED"
    with pytest.raises(Conflict) as caught:
        client.retry_job(second.id)
    assert caught.value.code == "NOT_RETRYABLE"

    canceled = client.cancel_job(first.id)
    assert canceled.status == "canceled"
    with pytest.raises(Conflict) as caught:
        client.cancel_job(first.id)
    assert caught.value.code == "NOT_CANCELABLE"

    batch = client.cancel_batch(batch.id)
    assert batch.status == "canceled" and batch.finished
    assert {j.status for j in batch.jobs} == {"canceled"}

    batch = client.retry_batch(batch.id)
    assert {j.status for j in batch.jobs} == {"queued"} and not batch.finished
    start_worker()
    done = client.wait_for_batch(batch.id)
    assert done.status == "completed"

    client.delete_job(first.id)
    with pytest.raises(NotFound):
        client.get_job(first.id)
    assert [j.id for j in client.get_batch(batch.id).jobs] == [second.id]
    client.delete_batch(batch.id)
    with pytest.raises(NotFound):
        client.get_batch(batch.id)
    with pytest.raises(NotFound):
        client.get_job(second.id)


# --- errors --------------------------------------------------------------------------------------


def test_unknown_ids_are_404_and_bad_keys_401(server, client, bob_key, broker):
    missing = str(uuid.uuid4())
    with pytest.raises(NotFound) as caught:
        client.get_batch(missing)
    error = caught.value
    assert (error.status, error.code) == (404, "NOT_FOUND") and error.request_id
    assert error.instance == f"/api/v2/batches/{missing}"
    with pytest.raises(NotFound):
        client.get_job(missing)
    with pytest.raises(NotFound):
        list(client.follow_events(missing))

    mine = client.create_batch([photo("horse.png")], generator="relief", params=SMALL)
    with Client(server.url, bob_key) as bob:
        with pytest.raises(NotFound):
            bob.get_batch(mine.id)
        with pytest.raises(NotFound):
            bob.cancel_batch(mine.id)
        assert list(bob.list_batches()) == []

    with Client(server.url, "i2m_bogus_key") as stranger:
        with pytest.raises(Unauthorized) as caught:
            stranger.generators()
        assert (caught.value.status, caught.value.code) == (401, "UNAUTHORIZED")
        with pytest.raises(Unauthorized):
            list(stranger.follow_events(mine.id))


def test_refused_parameters_and_generators_name_the_problem(client):
    with pytest.raises(ApiError) as caught:
        client.create_batch([photo("horse.png")], generator="relief", params={"face_limit": 1})
    error = caught.value
    assert (error.status, error.code) == (422, "INVALID_PARAMS")  # docs/api-v2.md
    assert [field.field for field in error.errors] == ["params.face_limit"]
    assert "face_limit" in error.detail and error.request_id
    with pytest.raises(BadRequest) as caught:
        client.create_batch([photo("horse.png")], generator="no-such-generator")
    assert caught.value.code == "INVALID_MODEL"
    assert list(client.list_batches()) == []


def test_generators_are_described(client):
    generators = {g.id: g for g in client.generators()}
    relief = generators["relief"]
    assert relief.available and relief.circuit is None
    face_limit = {p.name: p for p in relief.params}["face_limit"]
    assert (face_limit.type, face_limit.minimum, face_limit.maximum) == ("integer", 500, 200000)


# --- rate limits ---------------------------------------------------------------------------------


def test_a_429_is_retried_after_retry_after_and_then_succeeds(limited_server, alice_key):
    retries = []
    with Client(limited_server.url, alice_key, on_retry=retries.append) as client:
        for _ in range(6):  # 2 reads per 5-second window: a 429 comes within three reads
            assert client.generators()
            if retries:
                break
    assert retries, "no request was rate limited"
    retry = retries[0]
    assert retry.status == 429 and retry.attempt == 1
    assert retry.retry_after is not None and int(retry.retry_after) >= 1
    assert retry.delay == float(retry.retry_after)  # the client waited what the server said


def test_a_429_past_max_attempts_raises_rate_limited(limited_server, bob_key):
    with (
        Client(limited_server.url, bob_key, max_attempts=1) as client,
        pytest.raises(RateLimited) as caught,
    ):
        for _ in range(6):
            client.generators()
    error = caught.value
    assert (error.status, error.code) == (429, "RATE_LIMIT_EXCEEDED")
    assert error.retry_after is not None and error.retry_after >= 1
    assert error.headers["RateLimit-Remaining"] == "0"


# --- the async client ----------------------------------------------------------------------------


def test_the_async_client_does_the_same(server, alice_key, start_worker, tmp_path):
    async def scenario():
        async with AsyncClient(server.url, alice_key) as client:
            batch = await client.create_batch(
                [("a horse.png", photo("horse.png").read_bytes())], "relief", SMALL
            )
            start_worker()
            events = [e async for e in client.follow_events(batch.id)]
            page = await client.list_batches_page(limit=5)
            listed = [b.id async for b in client.list_batches()]
            paths = await client.download_batch(batch.id, tmp_path)
            with pytest.raises(NotFound):
                await client.get_job(str(uuid.uuid4()))
            return batch, events, page, listed, paths

    batch, events, page, listed, paths = asyncio.run(scenario())
    assert batch.jobs[0].file_name == "a horse.png"
    assert events[-1].name == "task_completed"
    assert_gapless(events)
    assert [b.id for b in page.items] == [batch.id] == listed
    assert len(paths) == 1 and paths[0].read_bytes()[:4] == b"glTF"
