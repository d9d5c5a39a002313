"""Figure 6: Relief generation time and peak memory per image, one process per image size.

coffee.png resized (Lanczos) to 0.25, 1 and 4 megapixels is run through
``ReliefGenerator().run`` with default parameters in a fresh child process per size: a warm-up,
then timed rounds (median). Peak memory is the child's RSS high-water mark (VmHWM, reset through
/proc/self/clear_refs before each phase) over its RSS at the start of the phase, imports done:
what one job adds to a worker process.

Baseline, in the same child: the part no generator can skip. Pillow opens and fully decodes the
same file, then makes the two resized copies every relief needs (the 384-pixel analysis copy
and the 1024-pixel texture; never enlarged).

    python -m bench.relief_generation --child IMAGE --rounds 3   (prints one JSON line)
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from PIL import Image

from bench import images
from bench.harness import BIN, ROOT, FigureResult, Row, launcher, ratio
from bench.stack import Stack

NAME = "relief_generation"
SIZES_MP = (0.25, 1.0, 4.0)
TARGET_MP = 1.0
TARGET_SECONDS = 1.5
TARGET_MB = 400.0


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()


def _peak_reset() -> int:
    """Reset the RSS high-water mark to the current RSS (Linux 4.0+); the RSS now."""
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")
    return _rss_bytes()


def _peak_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def _pillow_baseline(path: Path) -> None:
    with Image.open(path) as source:
        source.load()
        image = source.convert("RGB")
    for size in (384, 1024):
        scale = size / max(image.size)
        if scale < 1.0:
            dims = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
            image.resize(dims, Image.Resampling.LANCZOS, reducing_gap=3.0)


def child(path: Path, rounds: int) -> dict[str, Any]:
    import numpy  # noqa: F401
    import trimesh  # noqa: F401

    from apps.jobs.providers.base import RunContext
    from apps.jobs.providers.relief import ReliefGenerator

    generator = ReliefGenerator()
    context = RunContext(job_id="bench")
    _pillow_baseline(path)  # warm-up
    baseline_start = _peak_reset()
    baseline_times = []
    for _ in range(rounds):
        started = time.perf_counter()
        _pillow_baseline(path)
        baseline_times.append(time.perf_counter() - started)
    baseline_peak = _peak_bytes()
    first_start = _peak_reset()
    outputs = generator.run(path, {}, context)  # warm-up: the process's first job
    first_peak = _peak_bytes()
    relief_start = _peak_reset()
    relief_times = []
    for _ in range(rounds):
        started = time.perf_counter()
        outputs = generator.run(path, {}, context)
        relief_times.append(time.perf_counter() - started)
    relief_peak = _peak_bytes()
    return {
        "baseline_start_rss_mb": baseline_start / 1e6,
        "baseline_seconds": baseline_times,
        "baseline_peak_growth_mb": (baseline_peak - baseline_start) / 1e6,
        "relief_start_rss_mb": relief_start / 1e6,
        "relief_seconds": relief_times,
        "first_job_peak_growth_mb": (first_peak - first_start) / 1e6,
        "later_jobs_peak_growth_mb": (relief_peak - relief_start) / 1e6,
        "relief_peak_growth_mb": max(first_peak - first_start, relief_peak - relief_start) / 1e6,
        "relief_peak_rss_mb": max(first_peak, relief_peak) / 1e6,
        "outputs": {o.kind: len(o.data) for o in outputs},
    }


def _run_child(path: Path, rounds: int, env: dict[str, str]) -> dict[str, Any]:
    done = subprocess.run(
        launcher(
            [
                str(BIN / "python"),
                "-m",
                "bench.relief_generation",
                "--child",
                str(path),
                "--rounds",
                str(rounds),
            ]
        ),
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"relief child failed for {path.name}:\n{done.stderr[-3000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def _median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def run(stack: Stack, *, quick: bool = False) -> FigureResult:
    rounds = 2 if quick else 3
    folder = stack.tmp / "relief"
    folder.mkdir(exist_ok=True)
    measured: dict[str, dict[str, Any]] = {}
    rows = []
    for megapixels in SIZES_MP:
        path = images.relief_input(folder, megapixels)
        result = _run_child(path, rounds, stack.env)
        with Image.open(path) as image:
            result["size"] = list(image.size)
        seconds = _median(result["relief_seconds"])
        base_seconds = _median(result["baseline_seconds"])
        growth, base_growth = result["relief_peak_growth_mb"], result["baseline_peak_growth_mb"]
        measured[f"{megapixels:g}"] = result
        targeted = megapixels == TARGET_MP
        w, h = result["size"]
        rows.append(
            Row(
                f"6 relief {megapixels:g} MP ({w}x{h}), time (median of {rounds})",
                f"{seconds:.2f} s",
                f"{base_seconds * 1000:.0f} ms Pillow decode+resize",
                ratio(seconds, base_seconds),
                f"< {TARGET_SECONDS} s" if targeted else "-",
                seconds < TARGET_SECONDS if targeted else None,
            )
        )
        rows.append(
            Row(
                f"6 relief {megapixels:g} MP, peak RSS growth (worst job)",
                f"{growth:.0f} MB",
                f"{base_growth:.0f} MB Pillow decode+resize",
                ratio(growth, base_growth) if base_growth > 0.5 else None,
                f"< {TARGET_MB:.0f} MB" if targeted else "-",
                growth < TARGET_MB if targeted else None,
            )
        )
    return FigureResult(NAME, rows, {"rounds": rounds, "sizes": measured})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    print(json.dumps(child(args.child, args.rounds)))


if __name__ == "__main__":
    main()
