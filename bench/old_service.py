"""Figure 8: image2model beside the old FastAPI + Celery service, same machine, same inputs.

Runs only with ``--old URL`` (and ``--old-key KEY``, the old service's ``API_KEY``). The old
service is not part of this repository: start it yourself, one uvicorn process and its Celery
worker, as bench/README.md describes. Both services answer the v1 contract, so the same client
sends the same requests to each; rounds of the two alternate.

- Status reads: ``GET /api/v1/status/tasks/{id}/status`` for a finished one-photo batch, and
  each service's own ``GET /health``, 8 keep-alive connections.
- Upload ingest: the same 25-file multipart body as figure 2 to ``POST /api/v1/upload/``;
  MB/s and the web process's RSS growth (its pid found from the port it listens on).
- Completion notice (with ``--old-redis``, the old service's Celery result backend): a client
  follows ``/api/v1/status/tasks/{id}/stream`` of a one-photo batch; the time from the moment
  the batch's result was stored (the old chord's ``date_done``; the last job's ``finished_at``
  here, set just before its commit) to the ``task_completed`` event at the client.

The old upload hands every file to its worker, which calls FAL (the fake server the old
service was started with); the bench waits until that work is done before it measures again.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from typing import Any
from urllib.parse import urlsplit

import httpx
import psutil
import redis

from bench import upload_ingest
from bench.harness import FigureResult, Row, RssSampler, mb, median, ratio, settled_rss
from bench.images import DATA
from bench.rawhttp import Dechunker, read_head, request_head
from bench.stack import Stack, v1_upload
from bench.status_reads import alternating_rounds

NAME = "old_service"


class OldService:
    def __init__(self, url: str, key: str) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or parts.hostname not in {"127.0.0.1", "localhost"}:
            raise ValueError("--old must be http://127.0.0.1:PORT (a service on this machine)")
        self.url = url.rstrip("/")
        self.port = parts.port or 80
        self.auth = {"Authorization": f"Bearer {key}"}
        self.pid = _listening_pid(self.port)

    def rss(self) -> int:
        return int(psutil.Process(self.pid).memory_info().rss)

    def upload(self, files: list[tuple[str, bytes]]) -> dict[str, Any]:
        return v1_upload(self.url, self.auth, files)

    def chord_of(self, task_id: str, timeout: float = 30) -> str:
        """The chord that the upload's task hands the batch to (it does so within ms)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            body = httpx.get(f"{self.url}/api/v1/status/tasks/{task_id}/status", timeout=30).json()
            result = body.get("result") or {}
            if (
                body.get("state") == "SUCCESS"
                and isinstance(result, dict)
                and result.get("chord_task_id")
            ):
                return str(result["chord_task_id"])
            if body.get("state") == "FAILURE":
                raise RuntimeError(f"the old service's task {task_id} failed: {body}")
            time.sleep(0.01)
        raise RuntimeError(f"the old service's task {task_id} did not hand over to a chord")

    def wait_finished(self, task_id: str, timeout: float = 300) -> str:
        """Follows the upload's task, then its chord, until the batch has finished; returns the
        id of the task whose result holds the batch (the chord's)."""
        deadline = time.monotonic() + timeout
        current = task_id
        while time.monotonic() < deadline:
            body = httpx.get(f"{self.url}/api/v1/status/tasks/{current}/status", timeout=30).json()
            state = body.get("state")
            result = body.get("result") or {}
            if state == "SUCCESS" and isinstance(result, dict) and result.get("chord_task_id"):
                current = result["chord_task_id"]
                continue
            if state in {"SUCCESS", "FAILURE"}:
                return current
            time.sleep(0.2)
        raise RuntimeError(f"the old service's task {task_id} did not finish in {timeout:.0f} s")


async def _until_completed(port: int, path: str, headers: dict[str, str]) -> float:
    """Follows an SSE stream until its ``task_completed`` event; returns time.time() then."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        head = {**headers, "Accept": "text/event-stream"}
        writer.write(request_head("GET", path, port, head, None))
        await writer.drain()
        status, response_headers = await read_head(reader)
        if status != 200:
            raise RuntimeError(f"stream {path} answered {status}")
        chunked = response_headers.get("transfer-encoding", "").lower() == "chunked"
        dechunker = Dechunker() if chunked else None
        seen = b""
        while True:
            data = await asyncio.wait_for(reader.read(65536), timeout=120)
            if not data:
                raise RuntimeError(f"stream {path} ended before task_completed")
            seen += dechunker.feed(data) if dechunker else data
            if b"event: task_completed" in seen:
                return time.time()
            if b"event: task_failed" in seen:
                raise RuntimeError(f"stream {path}: the batch failed")
    finally:
        writer.close()


def _listening_pid(port: int) -> int:
    for connection in psutil.net_connections(kind="tcp"):
        listening = connection.status == psutil.CONN_LISTEN and connection.laddr.port == port
        if listening and connection.pid:
            return int(connection.pid)
    raise RuntimeError(f"no process on this machine listens on port {port}")


def _vs_old(label: str, new: float, old: float, unit: str, digits: int = 0) -> Row:
    """A figure 8 row: this service's value beside the old service's, no target."""
    shown = f"{{:.{digits}f}} {unit}"
    return Row(
        f"8 vs old: {label}",
        shown.format(new),
        shown.format(old) + " old",
        ratio(new, old) if old > 0 else None,
        "-",
        None,
    )


def _status_reads(stack: Stack, old: OldService, quick: bool) -> tuple[list[Row], dict]:
    requests = 300 if quick else 600
    rounds = 3 if quick else 5
    concurrency = 8
    web = stack.web()
    photo = [("coffee.png", (DATA / "coffee.png").read_bytes())]
    new_batch = stack.upload(web, photo)
    old_task = old.wait_finished(old.upload(photo)["task_id"])
    targets = {
        "new_status": (web.port, f"/api/v1/status/tasks/{new_batch['task_id']}/status", stack.auth),
        "old_status": (old.port, f"/api/v1/status/tasks/{old_task}/status", {}),
        "new_health": (web.port, "/health", {}),
        "old_health": (old.port, "/health", {}),
    }
    measured, result = alternating_rounds(targets, requests // 2, requests, rounds, concurrency)
    new, old_ = result["new_status"], result["old_status"]
    new_health, old_health = result["new_health"], result["old_health"]
    size = f"{rounds}x{requests} req, {concurrency} conn"
    rows = [
        _vs_old(f"status reads, req/s ({size})", new["rps"], old_["rps"], "req/s"),
        _vs_old("status reads, p50", new["p50_ms"], old_["p50_ms"], "ms", 1),
        _vs_old("status reads, p99", new["p99_ms"], old_["p99_ms"], "ms", 1),
        _vs_old("/health, req/s (each its own)", new_health["rps"], old_health["rps"], "req/s"),
    ]
    raw = {"rounds_measured": measured, "median": result, "old_task_id": old_task}
    return rows, raw


def _upload_ingest(stack: Stack, old: OldService, quick: bool) -> tuple[list[Row], dict]:
    rounds = 3
    photos, body, content_type = upload_ingest.batch(quick)
    batch_mb = mb(len(body))
    web = stack.web()
    path = "/api/v1/upload/"
    runs: dict[str, list[dict[str, float]]] = {"new": [], "old": []}
    for round_index in range(rounds + 1):  # the first round is the warm-up
        for name, server in (("new", web.proc), ("old", old)):
            auth = stack.auth if name == "new" else old.auth
            port = web.port if name == "new" else old.port
            idle = settled_rss(server, 0.5)
            with RssSampler(server.pid) as sampler:
                headers = {**auth, "Content-Type": content_type}
                seconds, answer = asyncio.run(upload_ingest.post(port, path, headers, body))
            runs[name].append(
                {
                    "seconds": seconds,
                    "mb_s": batch_mb / seconds,
                    "growth_mb": mb(sampler.peak - idle),
                    "warmup": round_index == 0,
                }
            )
            if name == "old":  # its worker calls FAL for every file: let it finish first
                old.wait_finished(json.loads(answer)["task_id"])
    measured = {name: rs[1:] for name, rs in runs.items()}
    speed = {name: median([r["mb_s"] for r in rs]) for name, rs in measured.items()}
    growth = {name: max(r["growth_mb"] for r in rs) for name, rs in measured.items()}
    size = f"{len(photos)} x {batch_mb / len(photos):.1f} MB, {rounds} rounds"
    rows = [
        _vs_old(f"upload ingest, MB/s ({size})", speed["new"], speed["old"], "MB/s", 1),
        Row(
            "8 vs old: upload ingest, web RSS growth (max)",
            f"{growth['new']:.1f} MB",
            f"{growth['old']:.1f} MB old",
            ratio(growth["new"], growth["old"]) if growth["old"] > 0.5 else None,
            "-",
            None,
        ),
    ]
    raw = {"body_bytes": len(body), "runs": runs, "mb_s_median": speed, "growth_mb_max": growth}
    return rows, raw


def _completion_notice(stack: Stack, old: OldService, old_redis: str, quick: bool):
    from django.db.models import Max

    from apps.jobs.models import Job

    trials = 3 if quick else 7
    photo = [("coffee.png", (DATA / "coffee.png").read_bytes())]
    web = stack.web()
    worker = stack.real_worker(processes=1, threads=2)
    results = redis.Redis.from_url(old_redis)
    delays: dict[str, list[float]] = {"new": [], "old": []}
    try:
        for _ in range(trials + 1):  # the first trial of each is the warm-up
            batch = stack.upload(web, photo)
            path = f"/api/v1/status/tasks/{batch['task_id']}/stream"
            arrived = asyncio.run(_until_completed(web.port, path, stack.auth))
            done = Job.objects.filter(batch_id=batch["task_id"]).aggregate(Max("finished_at"))
            delays["new"].append(arrived - done["finished_at__max"].timestamp())

            task_id = old.upload(photo)["task_id"]
            chord = old.chord_of(task_id)
            path = f"/api/v1/status/tasks/{chord}/stream"
            arrived = asyncio.run(_until_completed(old.port, path, {}))
            meta = json.loads(results.get(f"celery-task-meta-{chord}") or b"{}")
            if not meta.get("date_done"):
                raise RuntimeError(f"no Celery result for {chord} in {old_redis}")
            stored = dt.datetime.fromisoformat(meta["date_done"])
            if stored.tzinfo is None:
                stored = stored.replace(tzinfo=dt.UTC)
            delays["old"].append(arrived - stored.timestamp())
    finally:
        stack.procs.stop(worker)
    measured = {name: [d * 1000 for d in ds[1:]] for name, ds in delays.items()}
    p50 = {name: median(ms) for name, ms in measured.items()}
    worst = {name: max(ms) for name, ms in measured.items()}
    rows = [
        _vs_old(
            f"result stored -> task_completed at client, median of {trials}",
            p50["new"],
            p50["old"],
            "ms",
            1,
        ),
        _vs_old("result stored -> task_completed, worst", worst["new"], worst["old"], "ms", 1),
    ]
    return rows, {"delays_ms": measured}


def run(
    stack: Stack, *, old_url: str, old_key: str, old_redis: str = "", quick: bool = False
) -> FigureResult:
    old = OldService(old_url, old_key)
    status_rows, status_raw = _status_reads(stack, old, quick)
    ingest_rows, ingest_raw = _upload_ingest(stack, old, quick)
    notice_rows, notice_raw = (
        _completion_notice(stack, old, old_redis, quick) if old_redis else ([], {})
    )
    raw = {
        "old_url": old.url,
        "old_pid": old.pid,
        "old_cmdline": psutil.Process(old.pid).cmdline(),
        "status_reads": status_raw,
        "upload_ingest": ingest_raw,
        "completion_notice": notice_raw,
    }
    return FigureResult(NAME, status_rows + ingest_rows + notice_rows, raw)
