"""Figure 7: the zip of a 25-model batch, streamed by daphne, against reading the files.

A batch of 25 small photos (0.25 MP, seeded grain) is uploaded and run by the Procfile's worker
(``manage.py rundramatiq``) on the real Relief generator, so the archive holds 25 real GLB
models. ``GET /api/v1/download/{batch}/archive`` is then read to the end over one connection
(MB/s of the archive). Baseline: this process reading the same 25 model files from
MEDIA_ROOT in 256 KB chunks (warm page cache, like the server's). Rounds alternate; medians.
"""

from __future__ import annotations

import asyncio
import io
import time
import zipfile
from pathlib import Path

from bench import images
from bench.harness import FigureResult, Row, mb, median, ratio
from bench.rawhttp import Connection
from bench.stack import Stack

NAME = "zip_download"
MODELS = 25
CHUNK = 256 * 1024


async def _download(port: int, path: str, headers: dict[str, str]) -> tuple[float, bytes]:
    connection = await Connection.open(port)
    try:
        started = time.perf_counter()
        response = await connection.request("GET", path, headers)
        elapsed = time.perf_counter() - started
    finally:
        await connection.close()
    if response.status != 200:
        raise RuntimeError(f"GET {path} answered {response.status}: {response.body[:300]!r}")
    return elapsed, response.body


def _read_files(paths: list[Path]) -> tuple[float, int]:
    started = time.perf_counter()
    total = 0
    for path in paths:
        with open(path, "rb") as stream:
            while chunk := stream.read(CHUNK):
                total += len(chunk)
    return time.perf_counter() - started, total


def _wait_for_batch(batch_id: str, count: int, timeout: float = 600) -> None:
    from apps.jobs.models import Job

    rows = Job.objects.filter(batch_id=batch_id)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if rows.filter(status__in=Job.TERMINAL).count() >= count:
            break
        time.sleep(0.2)
    succeeded = rows.filter(status=Job.Status.SUCCEEDED).count()
    if succeeded != count:
        states = list(rows.exclude(status=Job.Status.SUCCEEDED).values_list("status", "error_code"))
        raise RuntimeError(f"{succeeded} of {count} relief jobs succeeded; others: {states[:5]}")


def run(stack: Stack, *, quick: bool = False) -> FigureResult:
    rounds = 3 if quick else 5
    from django.core.files.storage import default_storage

    from apps.jobs.models import Artifact

    stack.broker_flush()  # only this figure's jobs go to the real worker
    web = stack.web()
    worker = stack.real_worker(processes=1, threads=2)
    try:
        started = time.perf_counter()
        batch = stack.upload(web, images.small_photos(MODELS, megapixels=0.25))
        _wait_for_batch(batch["task_id"], MODELS)
        generated = time.perf_counter() - started
    finally:
        stack.procs.stop(worker)
    artifacts = Artifact.objects.filter(job__batch_id=batch["task_id"], kind="model")
    paths = [Path(default_storage.path(a.file.name)) for a in artifacts]
    path = f"/api/v1/download/{batch['task_id']}/archive"
    _, archive = asyncio.run(_download(web.port, path, stack.auth))  # warm-up, and a check
    names = zipfile.ZipFile(io.BytesIO(archive)).namelist()
    if len(names) != MODELS:
        raise RuntimeError(f"the archive holds {len(names)} files, not {MODELS}")
    _read_files(paths)
    app_runs: list[dict[str, float]] = []
    disk_runs: list[dict[str, float]] = []
    for _ in range(rounds):
        seconds, body = asyncio.run(_download(web.port, path, stack.auth))
        app_runs.append({"seconds": seconds, "bytes": len(body), "mb_s": mb(len(body)) / seconds})
        seconds, total = _read_files(paths)
        disk_runs.append({"seconds": seconds, "bytes": total, "mb_s": mb(total) / seconds})
    app = median([r["mb_s"] for r in app_runs])
    disk = median([r["mb_s"] for r in disk_runs])
    size = f"{MODELS} models, {mb(len(archive)):.1f} MB zip, {rounds} rounds"
    rows = [
        Row(
            f"7 zip download, MB/s ({size})",
            f"{app:.0f} MB/s",
            f"{disk:.0f} MB/s reading the files",
            ratio(app, disk),
            "- (no target)",
            None,
        )
    ]
    raw = {
        "models": MODELS,
        "archive_bytes": len(archive),
        "model_bytes": [p.stat().st_size for p in paths],
        "generation_seconds_with_real_worker": generated,
        "rounds": rounds,
        "app_runs": app_runs,
        "disk_runs": disk_runs,
        "app_mb_s_median": app,
        "disk_mb_s_median": disk,
    }
    return FigureResult(NAME, rows, raw)
