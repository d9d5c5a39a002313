"""What the ASGI module does at start-up, seen in a process of its own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_start_up_heap_is_frozen_out_of_the_collector():
    shown = subprocess.run(
        [
            sys.executable,
            "-c",
            "import gc, sys, image2model.asgi; from apps.jobs import api; "
            "print(gc.get_freeze_count(), 'apps.jobs.api' in sys.modules,"
            " any(o is api.task_status for o in gc.get_objects()))",
        ],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "image2model.settings"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    frozen, views_loaded, view_collectable = shown.stdout.split()
    # Django, the apps and the views (loaded by the URLconf before the freeze), not a handful;
    # a view is among the frozen objects, out of what the collector walks.
    assert int(frozen) > 50_000 and views_loaded == "True" and view_collectable == "False"
