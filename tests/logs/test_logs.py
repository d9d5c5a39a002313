"""Log analysis on generated logs with known answers; rotation, pruning, stored records."""

from __future__ import annotations

import gzip
import io
import json
import logging
import os
import time
import tracemalloc
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import CommandError, call_command

from apps.logs.analysis import analyze
from apps.logs.models import DailySummary, LogRecord


@pytest.fixture
def log_dir(settings, tmp_path):
    settings.LOG_DIR = tmp_path / "logs"
    settings.LOG_DIR.mkdir()
    return settings.LOG_DIR


def request_line(when: datetime, route: str, status: int, ms: float, level: str = "INFO") -> str:
    return json.dumps(
        {
            "time": when.isoformat(),
            "level": level,
            "logger": "image2model.requests",
            "message": f"GET {route} {status}",
            "route": route,
            "method": "GET",
            "status": status,
            "duration_ms": ms,
        }
    )


def write_known_log(path, start: datetime) -> None:
    """100 requests: latencies 1..100 ms, 10 of them 500s, plus two error lines."""
    lines = []
    for i in range(1, 101):
        route = "api/v1/upload/" if i % 4 == 0 else "api/v1/status/tasks/<task_id>/status"
        status = 500 if i % 10 == 0 else 200
        lines.append(request_line(start + timedelta(minutes=i), route, status, float(i)))
    for _ in range(2):
        lines.append(
            json.dumps(
                {
                    "time": (start + timedelta(minutes=5)).isoformat(),
                    "level": "ERROR",
                    "logger": "image2model.jobs",
                    "message": "job x failed unexpectedly",
                }
            )
        )
    lines.append("not json at all")
    lines.append(request_line(start - timedelta(days=2), "old/route", 200, 9999.0))  # outside
    path.write_text("\n".join(lines) + "\n")


def test_analysis_gives_the_known_answers(log_dir):
    start = datetime(2026, 11, 1, 10, 0, tzinfo=UTC)
    write_known_log(log_dir / "image2model.log", start)
    result = analyze([log_dir / "image2model.log"], start, start + timedelta(days=1)).result()
    assert result["requests"] == 100
    assert result["latency_ms"] == {"p50": 50.0, "p95": 95.0, "p99": 99.0}
    assert result["error_rate"] == 10.0
    assert result["top_endpoints"][0] == {
        "route": "GET api/v1/status/tasks/<task_id>/status",
        "count": 75,
    }
    assert result["top_endpoints"][1] == {"route": "GET api/v1/upload/", "count": 25}
    assert result["log_levels"]["ERROR"] == 2 and result["log_levels"]["INFO"] == 100
    assert result["top_errors"] == [{"message": "job x failed unexpectedly", "count": 2}]
    assert result["unreadable_lines"] == 1 and result["slow_requests"] == 0
    assert sum(hour["requests"] for hour in result["per_hour"]) == 100
    assert [h["hour"] for h in result["per_hour"]] == ["2026-11-01T10:00", "2026-11-01T11:00"]


def test_analysis_streams_a_large_log_in_little_memory(log_dir):
    start = datetime(2026, 11, 1, tzinfo=UTC)
    path = log_dir / "image2model.log"
    with open(path, "w") as stream:
        for i in range(150_000):  # about 35 MB
            stream.write(
                request_line(start + timedelta(seconds=i), f"route/{i % 7}", 200, i % 500) + "\n"
            )
    size = path.stat().st_size
    tracemalloc.start()
    result = analyze([path], start, start + timedelta(days=3)).result()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert result["requests"] == 150_000
    # Only counters and 8 bytes per request stay: a small fraction of the file.
    assert peak < size / 3, f"peak {peak} bytes for a {size}-byte log"


def test_analyze_logs_command_reads_gzipped_rotations_too(log_dir):
    now = datetime.now(UTC)
    write_known_log(log_dir / "image2model.log.20260101T000000", now - timedelta(hours=3))
    raw = (log_dir / "image2model.log.20260101T000000").read_bytes()
    with gzip.open(log_dir / "image2model.log.20260101T000000.gz", "wb") as packed:
        packed.write(raw)
    (log_dir / "image2model.log.20260101T000000").unlink()
    out = io.StringIO()
    call_command("analyze_logs", "--hours", "24", "--json", stdout=out)
    result = json.loads(out.getvalue())
    assert result["requests"] == 100 and result["latency_ms"]["p99"] == 99.0


@pytest.mark.django_db
def test_the_daily_summary_is_stored(log_dir):
    day = datetime(2026, 11, 1, tzinfo=UTC)
    write_known_log(log_dir / "image2model.log", day + timedelta(hours=2))
    out = io.StringIO()
    call_command("logs_daily_summary", "--date", "2026-11-01", stdout=out)
    assert "100 requests" in out.getvalue()
    assert DailySummary.objects.get(date=day.date()).data["error_rate"] == 10.0
    with pytest.raises(CommandError, match="YYYY-MM-DD"):
        call_command("logs_daily_summary", "--date", "yesterday")


def test_rotation_gzips_big_logs_and_keeps_the_newest(log_dir):
    live = log_dir / "image2model.log"
    for _ in range(4):
        live.write_text(request_line(datetime.now(UTC), "r", 200, 1.0) + "\n" + "x" * 2000 + "\n")
        out = io.StringIO()
        call_command("rotate_logs", "--max-bytes", "1000", "--keep", "2", stdout=out)
        assert "Rotated 1 log file(s)" in out.getvalue()
        time.sleep(0.01)
    rotated = sorted(log_dir.glob("image2model.log.*.gz"))
    assert len(rotated) == 2 and not live.exists()
    with gzip.open(rotated[-1], "rt") as stream:
        assert '"route": "r"' in stream.read()
    out = io.StringIO()
    call_command("rotate_logs", "--max-bytes", "1000", stdout=out)
    assert "Rotated 0 log file(s)" in out.getvalue()


@pytest.mark.django_db
def test_prune_deletes_old_files_and_records_only(log_dir):
    old = log_dir / "image2model.log.20250101T000000.gz"
    new = log_dir / "image2model.log.20261101T000000.gz"
    for path in (old, new):
        with gzip.open(path, "wt") as stream:
            stream.write("{}\n")
    ancient = time.time() - 40 * 86400
    os.utime(old, (ancient, ancient))
    LogRecord.objects.create(
        created_at=datetime.now(UTC) - timedelta(days=40), level="ERROR", logger="x", message="old"
    )
    LogRecord.objects.create(created_at=datetime.now(UTC), level="ERROR", logger="x", message="new")
    out = io.StringIO()
    call_command("prune_logs", "--older-than", "30d", stdout=out)
    assert out.getvalue().strip() == "Pruned 1 log file(s) and 1 stored record(s)."
    assert not old.exists() and new.exists()
    assert list(LogRecord.objects.values_list("message", flat=True)) == ["new"]
    with pytest.raises(CommandError):
        call_command("prune_logs", "--older-than", "30 days")


@pytest.mark.django_db(transaction=True)
def test_warnings_are_stored_for_the_admin_off_the_request_path():
    from apps.logs.handlers import DatabaseHandler

    # The suite runs without the database handler (see LOG_TO_DATABASE); attach one here.
    logger = logging.getLogger("image2model.test")
    handler = DatabaseHandler()
    logger.addHandler(handler)
    try:
        logger.warning("disk nearly full: %s%%", 91)
        logger.info("routine")  # below WARNING: not stored
        _wait_for_record("disk nearly full: 91%")
    finally:
        logger.removeHandler(handler)
    record = LogRecord.objects.get(message="disk nearly full: 91%")
    assert record.level == "WARNING" and record.logger == "image2model.test"
    assert not LogRecord.objects.filter(message="routine").exists()


@pytest.mark.django_db
def test_requests_are_logged_as_json_lines_with_route_and_request_id(client):
    from apps.core.request_id import RequestIdFilter
    from apps.logs.handlers import JsonLineFormatter

    stream = io.StringIO()
    capture = logging.StreamHandler(stream)
    capture.setFormatter(JsonLineFormatter())
    capture.addFilter(RequestIdFilter())
    logger = logging.getLogger("image2model")
    logger.addHandler(capture)
    try:
        client.get("/api/v1/health/liveness", HTTP_X_REQUEST_ID="trace-12345678")
    finally:
        logger.removeHandler(capture)
    line = json.loads(stream.getvalue().strip().splitlines()[-1])
    assert line["route"] == "api/v1/health/liveness" and line["status"] == 200
    assert line["request_id"] == "trace-12345678" and line["method"] == "GET"
    assert isinstance(line["duration_ms"], float) and line["level"] == "INFO"


def _wait_for_record(message: str) -> None:
    for _ in range(100):
        if LogRecord.objects.filter(message=message).exists():
            return
        time.sleep(0.05)
