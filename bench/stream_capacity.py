"""Figure 4: K live SSE streams of one queued batch on one daphne process.

One daphne process (soft open-files limit raised to the hard limit) is warmed with a single
stream, which also gives the K=1 baseline: three broadcasts, each one event recorded by this
process (``job_change``, as a worker would), timed from its commit until the client has read
the event's ``id:`` line. With that stream closed and the server idle, its RSS is measured.
Raw asyncio connections then open ``/api/v1/status/tasks/{batch}/stream`` with a Bearer key,
50 at a time, up to K = 500, then 1000, then 2000 (the streams stay open; each step adds the
difference). At each K, once every stream has its replayed history, the RSS is measured again
((RSS - idle) / K = memory per stream), and three broadcasts are timed until the last of the K
clients has the event (median of three).

The stream servers run with STREAM_POLL_SECONDS=3600: only pushes deliver, as in figure 3, and
the slow poll of thousands of streams (which runs on the same database thread as the pushes)
does not make the numbers depend on when the polls fall. Baseline for memory: the same K
streams held open by the bare ASGI app (bench/bare_asgi.py ``/stream``) on its own daphne,
which is what daphne itself spends per connection. At the end all clients close at once; the
server's own gauge (``image2model_open_streams`` on /metrics) and its log show whether it let
every stream go (kept in results.json).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from bench.harness import Daphne, FigureResult, Row, median, ratio, settled_rss
from bench.images import DATA
from bench.progress_latency import record_progress
from bench.rawhttp import LoopThread, SseStream
from bench.stack import Stack

NAME = "stream_capacity"
TARGET_SECONDS = 1.0
TARGET_KB_PER_STREAM = 100.0
OPEN_CONCURRENCY = 50
BROADCASTS = 3
DELIVERY_TIMEOUT = 60.0  # a stream that has not got the event by then counts as not delivered
SERVER_ENV = {"STREAM_POLL_SECONDS": "3600"}


async def _open_all(port: int, path: str, headers: dict[str, str], k: int) -> list[SseStream]:
    gate = asyncio.Semaphore(OPEN_CONCURRENCY)

    async def one() -> SseStream:
        async with gate:
            return await SseStream.open(port, path, headers)

    opened = await asyncio.gather(*(one() for _ in range(k)), return_exceptions=True)
    streams = [s for s in opened if isinstance(s, SseStream)]
    errors = [e for e in opened if isinstance(e, BaseException)]
    if errors:
        await _close_all(streams)
        raise RuntimeError(f"{len(errors)} of {k} streams did not open: {errors[0]!r}")
    return streams


async def _close_all(streams: list[SseStream]) -> None:
    await asyncio.gather(*(s.close() for s in streams), return_exceptions=True)


def _wait_all(streams: list[SseStream], event_id: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(event_id in s.seen for s in streams):
            return True
        time.sleep(0.01)
    return False


def _open_streams(server: Daphne) -> float:
    """The server's own count of open SSE streams (its ``image2model_open_streams`` gauge)."""
    text = httpx.get(f"{server.url}/metrics", timeout=30).text
    for line in text.splitlines():
        if line.startswith("image2model_open_streams{") and 'transport="sse"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _wait_streams_closed(server: Daphne, timeout: float = 15) -> float:
    """Wait until the server has let every stream go; how many it still counts as open."""
    deadline = time.monotonic() + timeout
    count = _open_streams(server)
    while count > 0 and time.monotonic() < deadline:
        time.sleep(0.5)
        count = _open_streams(server)
    return count


def _last_batch_seq(batch_id: str) -> int:
    from django.db.models import Max

    from apps.jobs.models import JobEvent

    return int(JobEvent.objects.filter(batch_id=batch_id).aggregate(m=Max("batch_seq"))["m"])


class _Counter:
    n = 0

    def next(self) -> int:
        self.n += 1
        return self.n


def _broadcast(
    streams: list[SseStream], batch_id: str, job_id: str, counter: _Counter
) -> dict[str, Any]:
    _, committed, _ = record_progress(job_id, counter.next())
    target = str(_last_batch_seq(batch_id))
    complete = _wait_all(streams, target, timeout=DELIVERY_TIMEOUT)
    arrivals = sorted(s.seen[target] - committed for s in streams if target in s.seen)
    missing = [s for s in streams if target not in s.seen]
    return {
        "target_id": target,
        "missing_closed_by_server": sum(1 for s in missing if s.task is not None and s.task.done()),
        "all_s": arrivals[-1] if complete else None,
        "p50_s": median(arrivals) if arrivals else None,
        "first_s": arrivals[0] if arrivals else None,
        "delivered": len(arrivals),
        "streams": len(streams),
    }


def _summary(broadcasts: list[dict[str, Any]]) -> dict[str, Any]:
    complete = [b["all_s"] for b in broadcasts if b["all_s"] is not None]
    return {
        "broadcasts": broadcasts,
        "all_delivered_s": median(complete) if len(complete) == len(broadcasts) else None,
        "p50_delivered_s": median([b["p50_s"] for b in broadcasts if b["p50_s"] is not None]),
    }


def _measure_app(stack: Stack, sizes: tuple[int, ...], batch: dict[str, Any]) -> dict[str, Any]:
    batch_id, job_id = batch["task_id"], batch["uploaded_files"][0]["task_id"]
    path = f"/api/v1/status/tasks/{batch_id}/stream"
    counter = _Counter()
    server = stack.daphne("streams", extra_env=SERVER_ENV, raise_nofile=True)
    steps: dict[str, Any] = {}
    streams: list[SseStream] = []
    try:
        with LoopThread() as loop:
            last = _last_batch_seq(batch_id)
            single = loop.run(SseStream.open(server.port, path, stack.auth))
            if not _wait_all([single], f"{last}.1", timeout=30):
                raise RuntimeError("the single stream did not get its history")
            _broadcast([single], batch_id, job_id, counter)  # warm-up
            k1 = _summary([_broadcast([single], batch_id, job_id, counter) for _ in range(3)])
            loop.run(single.close())
            _wait_streams_closed(server)
            idle = settled_rss(server.proc, 1.5)
            try:
                for k in sizes:
                    last = _last_batch_seq(batch_id)
                    started = time.perf_counter()
                    streams += loop.run(
                        _open_all(server.port, path, stack.auth, k - len(streams)), timeout=600
                    )
                    if not _wait_all(streams, f"{last}.1", timeout=120):
                        raise RuntimeError(f"not every one of {k} streams got its history")
                    opened = time.perf_counter() - started
                    rss = settled_rss(server.proc, 2.0)
                    gauge = _open_streams(server)
                    broadcasts = []
                    for _ in range(BROADCASTS):
                        broadcasts.append(_broadcast(streams, batch_id, job_id, counter))
                        time.sleep(0.3)
                    steps[str(k)] = {
                        "k": k,
                        "open_seconds_for_added_streams": opened,
                        "rss_mb": rss / 1e6,
                        "kb_per_stream": (rss - idle) / k / 1000,
                        "server_open_streams_gauge": gauge,
                        **_summary(broadcasts),
                    }
            finally:
                loop.run(_close_all(streams), timeout=120)
            left_open = _wait_streams_closed(server)
        log = server.proc.log_path.read_text(errors="replace")
    finally:
        server.stop()
    return {
        "k1": k1,
        "idle_rss_mb": idle / 1e6,
        "steps": steps,
        "closed_at_once": len(streams),
        "server_streams_left_open_15s_after_close": left_open,
        "server_exceptions": log.count("Exception inside application"),
        "server_first_exception": next(
            (ln[:600] for ln in log.splitlines() if "Exception inside application" in ln), None
        ),
    }


def _measure_bare(stack: Stack, sizes: tuple[int, ...]) -> dict[str, Any]:
    server = stack.daphne("bare-streams", "bench.bare_asgi:application", raise_nofile=True)
    steps: dict[str, Any] = {}
    streams: list[SseStream] = []
    try:
        with LoopThread() as loop:
            warm = loop.run(SseStream.open(server.port, "/stream", {}))
            _wait_all([warm], "0", timeout=10)
            loop.run(warm.close())
            idle = settled_rss(server.proc, 1.5)
            try:
                for k in sizes:
                    streams += loop.run(
                        _open_all(server.port, "/stream", {}, k - len(streams)), timeout=300
                    )
                    if not _wait_all(streams, "0", timeout=60):
                        raise RuntimeError(f"not every one of {k} bare streams got its frame")
                    rss = settled_rss(server.proc, 2.0)
                    steps[str(k)] = {"k": k, "kb_per_stream": (rss - idle) / k / 1000}
            finally:
                loop.run(_close_all(streams), timeout=120)
    finally:
        server.stop()
    return {"idle_rss_mb": idle / 1e6, "steps": steps}


def run(stack: Stack, *, quick: bool = False) -> FigureResult:
    sizes = (50, 200) if quick else (500, 1000, 2000)
    web = stack.web()
    batch = stack.upload(web, [("coffee.png", (DATA / "coffee.png").read_bytes())])
    app = _measure_app(stack, sizes, batch)
    bare = _measure_bare(stack, sizes)
    base_s = app["k1"]["all_delivered_s"]
    rows = []
    for k in sizes:
        step, bare_step = app["steps"][str(k)], bare["steps"][str(k)]
        delivered = step["all_delivered_s"]
        rows.append(
            Row(
                f"4 streams K={k}: all delivered (median of {BROADCASTS})",
                f"{delivered:.3f} s" if delivered is not None else "not all",
                f"{base_s * 1000:.1f} ms K=1" if base_s else "-",
                ratio(delivered, base_s) if delivered and base_s else None,
                f"< {TARGET_SECONDS:.0f} s",
                delivered is not None and delivered < TARGET_SECONDS,
            )
        )
        rows.append(
            Row(
                f"4 streams K={k}: server RSS per stream",
                f"{step['kb_per_stream']:.0f} KB",
                f"{bare_step['kb_per_stream']:.0f} KB bare daphne",
                ratio(step["kb_per_stream"], bare_step["kb_per_stream"]),
                f"< {TARGET_KB_PER_STREAM:.0f} KB",
                step["kb_per_stream"] < TARGET_KB_PER_STREAM,
            )
        )
    raw = {
        "sizes": list(sizes),
        "open_concurrency": OPEN_CONCURRENCY,
        "broadcasts_per_size": BROADCASTS,
        "server_env": SERVER_ENV,
        "app": app,
        "bare": bare,
    }
    return FigureResult(NAME, rows, raw)
