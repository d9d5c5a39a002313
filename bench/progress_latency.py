"""Figure 3: progress latency, from a committed JobEvent to its frame at an SSE client.

This process plays the worker: ``job_change(..., event_type="progress")`` writes the event and,
on commit, pushes the wake-up through channels_redis; daphne's stream consumer reads the log
and sends the frame. The clock starts in an ``on_commit`` callback registered before
job_change's own (so it runs at the commit, just before the push) and stops when the ``id:``
line reaches the client. STREAM_POLL_SECONDS is 30 in the server, so only pushes count.

Baseline: a raw Redis PUBLISH -> SUBSCRIBE delivery (redis-py), same spacing, same process.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import redis

from bench.harness import REDIS_PREFIX, FigureResult, Row, latency_summary, median, ratio
from bench.images import DATA
from bench.rawhttp import LoopThread, SseStream
from bench.stack import Stack

NAME = "progress_latency"
TARGET_P50_MS = 10.0
TARGET_P99_MS = 50.0
SPACING_SECONDS = 0.02


def record_progress(job_id: str, n: int) -> tuple[float, float, int]:
    """One progress change of ``job_id``: (call time, commit time, the job's new event seq)."""
    from django.db import transaction

    from apps.jobs.events import job_change

    committed: list[float] = []
    called = time.perf_counter()
    with transaction.atomic():
        transaction.on_commit(lambda: committed.append(time.perf_counter()))
        job = job_change(
            job_id,
            changes={"progress": n % 90, "message": f"bench progress {n}"},
            event_type="progress",
        )
    if job is None or not committed:
        raise RuntimeError(f"job {job_id} did not take the change")
    return called, committed[0], job.event_seq


def _wait_for(stream: SseStream, ids: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not all(i in stream.seen for i in ids):
        time.sleep(0.01)


def _app_round(stream: SseStream, job_id: str, events: int, start: int) -> dict[str, Any]:
    sent: list[tuple[float, float, int]] = []
    next_at = time.perf_counter()
    for n in range(start, start + events):
        sent.append(record_progress(job_id, n))
        next_at += SPACING_SECONDS
        time.sleep(max(0.0, next_at - time.perf_counter()))
    _wait_for(stream, [str(seq) for _, _, seq in sent], timeout=5)
    latencies = [stream.seen[str(seq)] - c for _, c, seq in sent if str(seq) in stream.seen]
    from_call = [stream.seen[str(seq)] - a for a, _, seq in sent if str(seq) in stream.seen]
    return {
        **latency_summary(latencies),
        "lost": len(sent) - len(latencies),
        "from_call": latency_summary(from_call),
    }


def _redis_round(client: redis.Redis, channel: str, events: int) -> dict[str, Any]:
    pubsub = client.pubsub()
    pubsub.subscribe(channel)
    confirmation = pubsub.get_message(timeout=5.0)
    if confirmation is None or confirmation["type"] != "subscribe":
        raise RuntimeError(f"no subscription confirmation from Redis: {confirmation!r}")
    arrived: dict[bytes, float] = {}
    done = threading.Event()

    def listen() -> None:
        while len(arrived) < events:
            message = pubsub.get_message(timeout=5.0)
            if message is None:
                break
            if message["type"] != "message":
                continue
            arrived[message["data"]] = time.perf_counter()
        done.set()

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    time.sleep(0.1)
    sent: dict[bytes, float] = {}
    next_at = time.perf_counter()
    for n in range(events):
        key = str(n).encode()
        sent[key] = time.perf_counter()
        client.publish(channel, key)
        next_at += SPACING_SECONDS
        time.sleep(max(0.0, next_at - time.perf_counter()))
    done.wait(10)
    pubsub.close()
    latencies = [arrived[k] - t for k, t in sent.items() if k in arrived]
    return {**latency_summary(latencies), "lost": len(sent) - len(latencies)}


def run(stack: Stack, *, quick: bool = False) -> FigureResult:
    events = 50 if quick else 200
    warmup = 20
    rounds = 3
    web = stack.web()
    batch = stack.upload(web, [("coffee.png", (DATA / "coffee.png").read_bytes())])
    job_id = batch["uploaded_files"][0]["task_id"]
    client = redis.Redis.from_url(stack.redis_url)
    channel = f"{REDIS_PREFIX}:bench-pubsub-probe"
    app_rounds: list[dict[str, Any]] = []
    redis_rounds: list[dict[str, Any]] = []
    with LoopThread() as loop:
        stream = loop.run(
            SseStream.open(web.port, f"/api/v1/status/jobs/{job_id}/stream", stack.auth)
        )
        try:
            _wait_for(stream, ["1.1"], timeout=10)  # the job's "created" event, replayed
            _app_round(stream, job_id, warmup, start=0)
            _redis_round(client, channel, warmup)
            for r in range(rounds):
                app_rounds.append(_app_round(stream, job_id, events, start=(r + 1) * 1000))
                redis_rounds.append(_redis_round(client, channel, events))
        finally:
            loop.run(stream.close())
    app = {k: median([r[k] for r in app_rounds]) for k in ("p50_ms", "p99_ms")}
    base = {k: median([r[k] for r in redis_rounds]) for k in ("p50_ms", "p99_ms")}
    lost = sum(r["lost"] for r in app_rounds)
    size = f"{rounds}x{events} events, {SPACING_SECONDS * 1000:.0f} ms apart"
    rows = [
        Row(
            f"3 progress latency, p50 ({size})",
            f"{app['p50_ms']:.1f} ms",
            f"{base['p50_ms']:.2f} ms Redis pub/sub",
            ratio(app["p50_ms"], base["p50_ms"]),
            f"< {TARGET_P50_MS:.0f} ms",
            app["p50_ms"] < TARGET_P50_MS and lost == 0,
        ),
        Row(
            "3 progress latency, p99",
            f"{app['p99_ms']:.1f} ms",
            f"{base['p99_ms']:.2f} ms Redis pub/sub",
            ratio(app["p99_ms"], base["p99_ms"]),
            f"< {TARGET_P99_MS:.0f} ms",
            app["p99_ms"] < TARGET_P99_MS and lost == 0,
        ),
    ]
    raw = {
        "components_p50_ms": _components(),
        "events_per_round": events,
        "warmup_events": warmup,
        "rounds": rounds,
        "spacing_seconds": SPACING_SECONDS,
        "app_rounds": app_rounds,
        "redis_rounds": redis_rounds,
        "app_median": app,
        "redis_median": base,
        "lost_events": lost,
    }
    return FigureResult(NAME, rows, raw)


def _components(samples: int = 50) -> dict[str, float]:
    """What the steps of a push cost here (p50, ms): a new PostgreSQL connection (every stream
    read opens one while DATABASE_CONN_MAX_AGE is 0), and one group_send through
    async_to_sync from sync code (event_push makes two per event)."""
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer
    from django.db import connection

    def p50(action: Any) -> float:
        times = []
        for _ in range(samples):
            started = time.perf_counter()
            action()
            times.append(time.perf_counter() - started)
        return median(times) * 1000

    layer = get_channel_layer()
    message = {"type": "job.event", "job_id": "-", "batch_id": "-", "seq": 0, "batch_seq": 0}
    return {
        "postgres_connect": p50(lambda: (connection.close(), connection.ensure_connection())),
        "group_send_async_to_sync": p50(
            lambda: async_to_sync(layer.group_send)("bench-probe", message)
        ),
    }
