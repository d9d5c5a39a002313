"""Figure 1: batch status reads against a trivial JSON view on the same daphne process.

``GET /api/v1/status/tasks/{id}/status`` with a Bearer key (the key remembered after its first
use and confirmed by the rate limit's Redis command; the batch's status version read from Redis
and, the batch being unchanged, its body answered from the process's memory, decision 0025)
beside ``GET /health`` (a Django view that returns a constant dict through the same
middleware). Requests go over a fixed number of keep-alive connections; rounds of the two
alternate, and each figure is the median of rounds.

A second web process with ``STATUS_CACHE=false`` shows the same reads when every one goes to
PostgreSQL (the batch, its jobs and artifacts in one query), beside its own ``/health``.
"""

from __future__ import annotations

import asyncio

from bench.harness import FigureResult, Row, latency_summary, median, ratio
from bench.images import DATA
from bench.rawhttp import hammer
from bench.stack import Stack

NAME = "status_reads"
TARGET_RATIO = 0.6


def run(stack: Stack, *, quick: bool = False) -> FigureResult:
    requests = 300 if quick else 600
    warmup = 100 if quick else 300
    rounds = 3 if quick else 5  # the two endpoints alternate; a shared machine drifts
    concurrency = 8
    web = stack.web()
    batch = stack.upload(web, [("coffee.png", (DATA / "coffee.png").read_bytes())])
    targets = {
        "trivial": (web.port, "/health", {}),
        "status": (web.port, f"/api/v1/status/tasks/{batch['task_id']}/status", stack.auth),
    }
    measured, result = alternating_rounds(targets, warmup, requests, rounds, concurrency)
    status, trivial = result["status"], result["trivial"]
    uncached_web = stack.daphne("web-status-cache-off", extra_env={"STATUS_CACHE": "false"})
    try:
        uncached_targets = {
            name: (uncached_web.port, path, headers) for name, (_, path, headers) in targets.items()
        }
        uncached_measured, uncached = alternating_rounds(
            uncached_targets, warmup, requests, rounds, concurrency
        )
    finally:
        uncached_web.stop()
    size = f"{rounds}x{requests} req, {concurrency} conn"
    throughput = ratio(status["rps"], trivial["rps"])
    rows = [
        Row(
            f"1 status reads, req/s ({size})",
            f"{status['rps']:.0f} req/s",
            f"{trivial['rps']:.0f} req/s /health",
            throughput,
            f">= {TARGET_RATIO}x /health",
            throughput is not None and throughput >= TARGET_RATIO,
        ),
        Row(
            "1 status reads, STATUS_CACHE=false",
            f"{uncached['status']['rps']:.0f} req/s",
            f"{uncached['trivial']['rps']:.0f} req/s /health",
            ratio(uncached["status"]["rps"], uncached["trivial"]["rps"]),
            "-",
            None,
        ),
        Row(
            "1 status reads, p50",
            f"{status['p50_ms']:.1f} ms",
            f"{trivial['p50_ms']:.1f} ms /health",
            ratio(status["p50_ms"], trivial["p50_ms"]),
            "-",
            None,
        ),
        Row(
            "1 status reads, p99",
            f"{status['p99_ms']:.1f} ms",
            f"{trivial['p99_ms']:.1f} ms /health",
            ratio(status["p99_ms"], trivial["p99_ms"]),
            "-",
            None,
        ),
    ]
    raw = {
        "queries_per_request": _queries(batch["task_id"], stack.auth),
        "requests_per_round": requests,
        "warmup_requests": warmup,
        "rounds": rounds,
        "concurrency": concurrency,
        "rounds_measured": measured,
        "median": result,
        "status_cache_off": {"rounds_measured": uncached_measured, "median": uncached},
    }
    return FigureResult(NAME, rows, raw)


Target = tuple[int, str, dict[str, str]]  # port, path, headers


def alternating_rounds(
    targets: dict[str, Target], warmup: int, requests: int, rounds: int, concurrency: int
) -> tuple[dict[str, list[dict[str, float]]], dict[str, dict[str, float]]]:
    """GETs of each target in turn, ``rounds`` times after a warm-up: every round's req/s and
    latencies by target, and their medians."""
    for port, path, headers in targets.values():
        asyncio.run(hammer(port, path, headers, warmup, concurrency))
    measured: dict[str, list[dict[str, float]]] = {name: [] for name in targets}
    for _ in range(rounds):
        for name, (port, path, headers) in targets.items():
            elapsed, latencies = asyncio.run(hammer(port, path, headers, requests, concurrency))
            measured[name].append({"rps": requests / elapsed, **latency_summary(latencies)})
    medians = {
        name: {key: median([r[key] for r in rs]) for key in ("rps", "p50_ms", "p99_ms")}
        for name, rs in measured.items()
    }
    return measured, medians


def _queries(task_id: str, auth: dict[str, str]) -> dict[str, int]:
    """SQL queries one request makes, counted in this process with Django's test client."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client(HTTP_HOST="127.0.0.1", HTTP_AUTHORIZATION=auth["Authorization"])
    counts = {}
    for name, path in (
        ("trivial", "/health"),
        ("status", f"/api/v1/status/tasks/{task_id}/status"),
    ):
        client.get(path)  # warm
        with CaptureQueriesContext(connection) as queries:
            client.get(path)
        counts[name] = len(queries.captured_queries)
    return counts
