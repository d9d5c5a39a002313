"""Figure 2: upload ingest (MB/s) and the web process's memory growth while it ingests.

One multipart body of N photo-like PNGs (~2 MB each, made deterministically) is posted to
``/api/v1/upload/`` (parse, store to temporary files, decode every image to check it, hash,
save to MEDIA_ROOT, create the batch, jobs and events) and to bench/bare_asgi.py served by its
own daphne the same way (read the body, discard it). While image2model ingests, its RSS is
sampled every 5 ms; the growth is the peak over the RSS it had, idle, just before. The bare
app's growth, sampled the same way, shows what daphne itself holds while it receives a body.
"""

from __future__ import annotations

import asyncio
import time

from bench import images
from bench.harness import FigureResult, Row, RssSampler, mb, median, ratio, settled_rss
from bench.rawhttp import Connection
from bench.stack import Stack

NAME = "upload_ingest"
TARGET_RATIO = 0.5
MEMORY_MB_PER_100MB = 64.0


async def post(port: int, path: str, headers: dict[str, str], body: bytes) -> tuple[float, bytes]:
    """One POST on a new connection: (seconds until the whole answer, its body)."""
    connection = await Connection.open(port)
    try:
        started = time.perf_counter()
        response = await connection.request("POST", path, headers, body)
        elapsed = time.perf_counter() - started
    finally:
        await connection.close()
    if response.status != 200:
        raise RuntimeError(f"POST {path} answered {response.status}: {response.body[:500]!r}")
    return elapsed, response.body


def batch(quick: bool) -> tuple[list[tuple[str, bytes]], bytes, str]:
    """The figure's batch (5 files for --quick, else 25 of ~2 MB): files, body, Content-Type."""
    photos = images.upload_photos(5 if quick else 25)
    body, content_type = images.multipart(photos)
    return photos, body, content_type


def run(stack: Stack, *, quick: bool = False) -> FigureResult:
    rounds = 3
    photos, body, content_type = batch(quick)
    files = len(photos)
    batch_mb = mb(len(body))
    web = stack.web()
    bare = stack.daphne("bare-asgi", "bench.bare_asgi:application")
    headers = {**stack.auth, "Content-Type": content_type}
    path = "/api/v1/upload/"
    app_runs: list[dict[str, float]] = []
    bare_runs: list[dict[str, float]] = []
    octet_runs: list[dict[str, float]] = []
    octet = {"Content-Type": "application/octet-stream"}
    try:
        for round_index in range(rounds + 1):  # the first round is the warm-up
            idle = settled_rss(web.proc, 0.5)
            with RssSampler(web.proc.pid) as sampler:
                seconds, _ = asyncio.run(post(web.port, path, headers, body))
            app_runs.append(
                {
                    "seconds": seconds,
                    "mb_s": batch_mb / seconds,
                    "idle_rss_mb": mb(idle),
                    "peak_rss_mb": mb(sampler.peak),
                    "growth_mb": mb(sampler.peak - idle),
                    "warmup": round_index == 0,
                }
            )
            idle = settled_rss(bare.proc, 0.5)
            with RssSampler(bare.proc.pid) as sampler:
                seconds, _ = asyncio.run(post(bare.port, path, headers, body))
            bare_runs.append({"seconds": seconds, "growth_mb": mb(sampler.peak - idle)})
            # The same bytes as application/octet-stream: daphne without Twisted's form parsing.
            idle = settled_rss(bare.proc, 0.5)
            with RssSampler(bare.proc.pid) as sampler:
                seconds, _ = asyncio.run(post(bare.port, path, octet, body))
            octet_runs.append({"seconds": seconds, "growth_mb": mb(sampler.peak - idle)})
    finally:
        bare.stop()
    measured = app_runs[1:]
    app_mb_s = median([r["mb_s"] for r in measured])
    bare_mb_s = median([batch_mb / r["seconds"] for r in bare_runs[1:]])
    growth = max(r["growth_mb"] for r in measured)
    bare_growth = max(r["growth_mb"] for r in bare_runs[1:])
    allowed = MEMORY_MB_PER_100MB * batch_mb / 100
    speed = ratio(app_mb_s, bare_mb_s)
    size = f"{files} x {batch_mb / files:.1f} MB = {batch_mb:.0f} MB, {rounds} rounds"
    rows = [
        Row(
            f"2 upload ingest, MB/s ({size})",
            f"{app_mb_s:.1f} MB/s",
            f"{bare_mb_s:.1f} MB/s bare ASGI",
            speed,
            f">= {TARGET_RATIO}x bare",
            speed is not None and speed >= TARGET_RATIO,
        ),
        Row(
            "2 upload ingest, RSS growth (max of rounds)",
            f"{growth:.1f} MB",
            f"{bare_growth:.1f} MB bare ASGI",
            ratio(growth, bare_growth) if bare_growth > 0.5 else None,
            f"< {allowed:.0f} MB ({MEMORY_MB_PER_100MB:.0f}/100 MB)",
            growth < allowed,
        ),
    ]
    raw = {
        "files": files,
        "file_bytes": [len(data) for _, data in photos],
        "body_bytes": len(body),
        "rounds": rounds,
        "app_runs": app_runs,
        "bare_runs": bare_runs,
        "bare_octet_stream_runs": octet_runs,
        "bare_octet_stream_mb_s_median": median([batch_mb / r["seconds"] for r in octet_runs[1:]]),
        "bare_octet_stream_growth_mb_max": max(r["growth_mb"] for r in octet_runs[1:]),
        "app_mb_s_median": app_mb_s,
        "bare_mb_s_median": bare_mb_s,
        "growth_mb_max": growth,
        "growth_mb_first_upload": app_runs[0]["growth_mb"],
        "growth_allowed_mb": allowed,
    }
    return FigureResult(NAME, rows, raw)
