"""Worker metrics: Dramatiq's Prometheus middleware in ``rundramatiq`` processes.

A ``rundramatiq`` command starts several worker processes. Each keeps its counters in
prometheus_client's multiprocess files, and Dramatiq's exposition server (a process the
Dramatiq CLI forks) serves the sum of them on ``WORKER_METRICS_HOST:WORKER_METRICS_PORT``.

prometheus_client chooses between in-process and multiprocess values when it is first
imported, and a worker imports it (through django-prometheus) long before Dramatiq's
middleware runs. So the environment must be set before the worker processes exist: settings
call :func:`prepare` in the ``manage.py rundramatiq`` process, which hands its environment on
to the Dramatiq CLI, its worker processes and the exposition server. Web processes are never
prepared and keep their own registry (served at ``/metrics``).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

MARKER = "IMAGE2MODEL_WORKER_METRICS"
MIDDLEWARE = "dramatiq.middleware.prometheus.Prometheus"


def prepare(directory: Path, host: str, port: int) -> None:
    """Point prometheus_client and Dramatiq's exposition server at a fresh directory.

    Files left by an earlier run would be summed in, so the directory is emptied first.
    """
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    os.environ.update(
        {
            "PROMETHEUS_MULTIPROC_DIR": str(directory),
            "dramatiq_prom_db": str(directory),
            "dramatiq_prom_host": host,
            "dramatiq_prom_port": str(port),
            MARKER: "1",
        }
    )


def enabled() -> bool:
    """True in a process started by a prepared ``rundramatiq`` (the worker processes)."""
    return os.environ.get(MARKER) == "1"
