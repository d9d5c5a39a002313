"""Figure 5: jobs/s through upload -> worker -> events -> artifact, the generator's work removed.

One worker process (bench/instant_worker.py: a real ``dramatiq.Worker`` on the Redis broker,
with ``ReliefGenerator.run`` replaced by an instant function returning a tiny GLB and PNG).
This process submits M jobs through ``apps.jobs.services.batch_submit`` in batches of 25 (files
checked, stored, batch, jobs and events created, messages sent on commit) and polls the
database until every job has succeeded; the clock runs from the first submit to the last
success.

Baseline: M messages to a bare actor (bench/bare_actor.py, one INSERT each) in the same worker
process, timed from the first send until the M rows exist.
"""

from __future__ import annotations

import io
import time
from typing import Any

from bench import images
from bench.harness import FigureResult, Row, median, ratio
from bench.stack import Stack

NAME = "pipeline_throughput"
TARGET_JOBS_S = 100.0
BATCH = 25
WORKER_THREADS = 4


def _submit_and_wait(owner: Any, photos: list[tuple[str, bytes]], jobs: int) -> dict[str, Any]:
    from apps.jobs.models import Job
    from apps.jobs.services import batch_submit
    from apps.uploads.services import IncomingFile

    started = time.perf_counter()
    batch_ids = []
    for _ in range(jobs // BATCH):
        files = [IncomingFile(name=name, stream=io.BytesIO(data)) for name, data in photos]
        batch, _ = batch_submit(owner=owner, files=files, generator_id="relief")
        batch_ids.append(batch.id)
    submitted = time.perf_counter() - started
    rows = Job.objects.filter(batch_id__in=batch_ids)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        finished = rows.filter(status__in=Job.TERMINAL).count()
        if finished >= jobs:
            break
        time.sleep(0.02)
    elapsed = time.perf_counter() - started
    succeeded = rows.filter(status=Job.Status.SUCCEEDED).count()
    if succeeded != jobs:
        states = list(rows.exclude(status=Job.Status.SUCCEEDED).values_list("status", "error_code"))
        raise RuntimeError(f"{succeeded} of {jobs} jobs succeeded; others: {states[:5]}")
    times = list(rows.values_list("created_at", "started_at", "finished_at"))
    return {
        "jobs": jobs,
        "seconds": elapsed,
        "submit_seconds": submitted,
        "jobs_s": jobs / elapsed,
        # Where the time went: one job in the worker (claim to success), and its wait in the queue.
        "run_seconds_median": median([(f - s).total_seconds() for _, s, f in times]),
        "queued_seconds_median": median([(s - c).total_seconds() for c, s, _ in times]),
    }


def _ticks_and_wait(messages: int) -> dict[str, Any]:
    from django.db import connection

    from bench.bare_actor import bench_tick

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE bench_tick")
    started = time.perf_counter()
    for n in range(messages):
        bench_tick.send(n)
    sent = time.perf_counter() - started
    deadline = time.monotonic() + 300
    count = 0
    while time.monotonic() < deadline:
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM bench_tick")
            count = int(cursor.fetchone()[0])
        if count >= messages:
            break
        time.sleep(0.02)
    elapsed = time.perf_counter() - started
    if count != messages:
        raise RuntimeError(f"only {count} of {messages} bare messages were processed")
    return {
        "messages": messages,
        "seconds": elapsed,
        "send_seconds": sent,
        "msg_s": messages / elapsed,
    }


def run(stack: Stack, *, quick: bool = False) -> FigureResult:
    jobs = 50 if quick else 100
    rounds = 3
    stack.broker_flush()  # earlier figures' uploads left queued messages: not part of this one
    from bench import bare_actor  # noqa: F401  registers the actor for sending

    photos = images.small_photos(BATCH, megapixels=0.05)
    owner = stack.owner()
    worker = stack.instant_worker(WORKER_THREADS)
    app_runs: list[dict[str, Any]] = []
    bare_runs: list[dict[str, Any]] = []
    try:
        _submit_and_wait(owner, photos, BATCH)  # warm-up
        _ticks_and_wait(BATCH)
        for _ in range(rounds):
            app_runs.append(_submit_and_wait(owner, photos, jobs))
            bare_runs.append(_ticks_and_wait(jobs))
    finally:
        stack.procs.stop(worker)
    app = median([r["jobs_s"] for r in app_runs])
    bare = median([r["msg_s"] for r in bare_runs])
    size = f"{rounds}x{jobs} jobs, 1 worker x {WORKER_THREADS} threads"
    rows = [
        Row(
            f"5 pipeline, jobs/s ({size})",
            f"{app:.1f} jobs/s",
            f"{bare:.0f} msg/s bare actor",
            ratio(app, bare),
            f">= {TARGET_JOBS_S:.0f} jobs/s",
            app >= TARGET_JOBS_S,
        )
    ]
    raw = {
        "jobs_per_round": jobs,
        "batch_size": BATCH,
        "rounds": rounds,
        "worker_threads": WORKER_THREADS,
        "image_bytes": [len(data) for _, data in photos],
        "app_runs": app_runs,
        "bare_runs": bare_runs,
        "app_jobs_s_median": app,
        "bare_msg_s_median": bare,
    }
    return FigureResult(NAME, rows, raw)
