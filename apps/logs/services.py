"""Writes of the logs app: rotation, pruning and daily summaries (called by commands and the
admin console)."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from apps.logs.analysis import analyze, log_files
from apps.logs.models import DailySummary, LogRecord

__all__ = ["logs_analyze", "logs_daily_summary", "logs_prune", "logs_rotate"]


def _live_log() -> Path:
    return Path(settings.LOG_DIR) / settings.LOG_FILE_NAME


def logs_rotate(*, max_bytes: int, max_age: timedelta, keep: int) -> dict[str, int]:
    """Rotate the live log when it is too big or too old: gzip it, keep the newest ``keep``."""
    live = _live_log()
    rotated = 0
    if live.exists() and live.stat().st_size > 0:
        too_big = live.stat().st_size >= max_bytes
        too_old = time.time() - _started_at(live) >= max_age.total_seconds()
        if too_big or too_old:
            target = live.with_name(f"{live.name}.{timezone.now():%Y%m%dT%H%M%S%f}")
            try:
                os.rename(live, target)  # writers (WatchedFileHandler) reopen a new file
            except FileNotFoundError:
                target = None  # another rotation took it first
            if target is not None:
                with open(target, "rb") as source, gzip.open(f"{target}.gz", "wb") as packed:
                    shutil.copyfileobj(source, packed)
                target.unlink()
                rotated = 1
    old = sorted(live.parent.glob(f"{live.name}.*.gz"), reverse=True)[keep:]
    removed = 0
    for path in old:
        try:
            path.unlink()
            removed += 1
        except FileNotFoundError:
            pass
    return {"rotated": rotated, "removed": removed}


def _started_at(path: Path) -> float:
    """When the live log got its first line (the oldest line's time, or the file's mtime)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as stream:
            first = stream.readline()
        return datetime.fromisoformat(json.loads(first)["time"]).timestamp()
    except (ValueError, KeyError, OSError):
        return path.stat().st_mtime


def logs_prune(*, older_than: timedelta, batch_size: int = 1000) -> dict[str, int]:
    """Delete rotated log files and stored log records older than ``older_than``."""
    cutoff = timezone.now() - older_than
    files = 0
    for path in Path(settings.LOG_DIR).glob(f"{settings.LOG_FILE_NAME}.*.gz"):
        try:
            if path.stat().st_mtime < cutoff.timestamp():
                path.unlink()
                files += 1
        except FileNotFoundError:
            pass
    rows = 0
    while True:
        ids = list(
            LogRecord.objects.filter(created_at__lt=cutoff).values_list("id", flat=True)[
                :batch_size
            ]
        )
        if not ids:
            break
        rows += LogRecord.objects.filter(id__in=ids).delete()[0]
    return {"files": files, "records": rows}


def logs_analyze(*, since: datetime, until: datetime) -> dict:
    """Counts, top errors and endpoints, latency percentiles for a period of the log files."""
    paths = log_files(Path(settings.LOG_DIR), settings.LOG_FILE_NAME)
    return analyze(paths, since, until).result()


def logs_daily_summary(*, day: date) -> DailySummary:
    """Analyse one UTC day and store it, so the numbers outlive the rotated files."""
    since = datetime(day.year, day.month, day.day, tzinfo=UTC)
    data = logs_analyze(since=since, until=since + timedelta(days=1))
    summary, _ = DailySummary.objects.update_or_create(date=day, defaults={"data": data})
    return summary
