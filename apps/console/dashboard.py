"""What the console dashboard shows: disk, health, queues, recent jobs, circuits."""

from __future__ import annotations

import os
import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.utils import timezone

from apps.console.health import components_check, overall_status
from apps.jobs import selectors as job_selectors


def folder_usage(path: Path) -> dict[str, Any]:
    """Bytes and files under a folder (walked with os.scandir; no file is opened)."""
    size = files = 0
    stack = [path]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except FileNotFoundError:
            continue
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                stack.append(entry.path)
            elif entry.is_file(follow_symlinks=False):
                files += 1
                size += entry.stat(follow_symlinks=False).st_size
    return {"path": str(path), "bytes": size, "files": files}


def dashboard_context() -> dict[str, Any]:
    media = Path(settings.MEDIA_ROOT)
    media.mkdir(parents=True, exist_ok=True)
    disk = shutil.disk_usage(media)
    components = components_check(["database", "redis", "workers", "disk_space", "generators"])
    since = timezone.now() - timedelta(hours=24)
    return {
        "disk": {
            "uploads": folder_usage(media / "uploads"),
            "results": folder_usage(media / "results"),
            "logs": folder_usage(Path(settings.LOG_DIR)),
            "filesystem": {
                "total": disk.total,
                "used": disk.used,
                "free": disk.free,
                "percent": round(disk.used / disk.total * 100, 1),
            },
        },
        "health": {"status": overall_status(components), "components": components},
        "queues": _safe(job_selectors.queue_depths, {}),
        "recent": job_selectors.job_counts_since(since=since),
        "circuits": {
            g["id"]: g["circuit_state"]
            for g in job_selectors.generators_describe()
            if g["circuit_state"] is not None
        },
    }


def _safe(call, fallback):
    try:
        return call()
    except Exception:  # Redis down: the dashboard still shows the rest
        return fallback
