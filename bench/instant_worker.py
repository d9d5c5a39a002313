"""A real Dramatiq worker process whose generator does no work: the pipeline figure's worker.

It sets Django up with the bench environment, replaces ``ReliefGenerator.run`` with a function
that returns a fixed tiny GLB and PNG preview at once, registers the real actors and the bare
baseline actor (bench/bare_actor.py), and runs ``dramatiq.Worker`` until SIGTERM. Everything
around the generator (claim, heartbeat, events, storage, artifacts) is the real pipeline.

    python -m bench.instant_worker --threads 4
"""

from __future__ import annotations

import argparse
import io
import os
import signal
import threading
from pathlib import Path
from typing import Any

READY_LINE = "instant worker ready"


def tiny_outputs() -> tuple[bytes, bytes]:
    import trimesh
    from PIL import Image

    model = trimesh.creation.box().export(file_type="glb")
    preview = io.BytesIO()
    Image.new("RGB", (16, 16), (120, 140, 160)).save(preview, format="PNG")
    return bytes(model), preview.getvalue()


def patch_relief() -> None:
    from apps.jobs.providers.base import Output, RunContext
    from apps.jobs.providers.relief import ReliefGenerator

    model, preview = tiny_outputs()

    def instant_run(
        self: ReliefGenerator, image_path: Path, params: dict[str, Any], context: RunContext
    ) -> list[Output]:
        return [
            Output(kind="model", format="glb", content_type="model/gltf-binary", data=model),
            Output(kind="preview", format="png", content_type="image/png", data=preview),
        ]

    ReliefGenerator.run = instant_run  # type: ignore[method-assign]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "image2model.settings")
    import django

    django.setup()
    import dramatiq

    patch_relief()
    from apps.jobs import actors  # noqa: F401  registers job_run on the broker
    from bench import bare_actor  # noqa: F401  registers bench_tick on the broker

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    worker = dramatiq.Worker(dramatiq.get_broker(), worker_timeout=100, worker_threads=args.threads)
    worker.start()
    print(READY_LINE, flush=True)
    stop.wait()
    worker.stop(timeout=10_000)


if __name__ == "__main__":
    main()
