"""`make bench`: run every figure against real processes, print one table, write results.json.

    .venv/bin/python bench/run.py [--only 1,3] [--quick] [--keep] [--old URL --old-key KEY]

``--only`` runs some figures, ``--quick`` uses small sizes (a smoke run, not for reporting),
``--keep`` keeps the temporary folder (logs, media) after a successful run too. ``--old`` adds
figure 8: the same requests to the old FastAPI + Celery service running at URL.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import signal
import sys
import time
import traceback
from pathlib import Path
from types import FrameType

ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)  # import the bench as a package, never its modules by bare name

from bench import (  # noqa: E402
    old_service,
    pipeline_throughput,
    progress_latency,
    relief_generation,
    status_reads,
    stream_capacity,
    upload_ingest,
    zip_download,
)
from bench.harness import (  # noqa: E402
    FigureResult,
    Row,
    machine_facts,
    raise_nofile_limit,
    table,
)
from bench.stack import Stack, dump_json  # noqa: E402

FIGURES = {
    "1": status_reads,
    "2": upload_ingest,
    "3": progress_latency,
    "4": stream_capacity,
    "5": pipeline_throughput,
    "6": relief_generation,
    "7": zip_download,
}
RESULTS = ROOT / "bench" / "results.json"


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally blocks that stop processes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default="", help="comma-separated figure numbers (default all)")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--old", default="", help="the old service's URL: adds figure 8")
    parser.add_argument("--old-key", default="", help="the old service's API_KEY")
    parser.add_argument(
        "--old-redis", default="", help="the old service's Celery result backend (Redis URL)"
    )
    args = parser.parse_args()
    known = {**FIGURES, "8": old_service} if args.old else FIGURES
    chosen = [n.strip() for n in args.only.split(",") if n.strip()] or list(known)
    unknown = [n for n in chosen if n not in known]
    if unknown:
        parser.error(f"unknown figure(s): {', '.join(unknown)} (8 needs --old)")
    if args.old and not args.old_key:
        parser.error("--old needs --old-key (the old service's API_KEY)")

    signal.signal(signal.SIGTERM, _terminate)
    nofile = raise_nofile_limit()
    started = time.perf_counter()
    stack = Stack.create()
    stack.keep_tmp = args.keep
    results: list[FigureResult] = []
    failed = True
    try:
        print(f"bench: preparing services (temporary folder {stack.tmp})", flush=True)
        stack.prepare()
        machine = machine_facts()
        for number in chosen:
            module = known[number]
            print(f"bench: figure {number} ({module.NAME})...", flush=True)
            figure_started = time.perf_counter()
            try:
                if module is old_service:
                    result = module.run(
                        stack,
                        old_url=args.old,
                        old_key=args.old_key,
                        old_redis=args.old_redis,
                        quick=args.quick,
                    )
                else:
                    result = module.run(stack, quick=args.quick)
            except Exception as error:
                traceback.print_exc()
                result = FigureResult(
                    module.NAME,
                    [Row(f"{number} {module.NAME}", "ERROR", "-", None, "-", False)],
                    error=f"{type(error).__name__}: {error}",
                )
            result.seconds = time.perf_counter() - figure_started
            print(f"bench: figure {number} done in {result.seconds:.0f} s", flush=True)
            results.append(result)
        failed = any(r.error for r in results)
    finally:
        stack.close(failed=failed)

    rows = [row for result in results for row in result.rows]
    print()
    print(table(rows))
    for result in results:
        if result.error:
            print(f"\n{result.name}: {result.error}")
    total = time.perf_counter() - started
    print(f"\nbench: {len(rows)} rows in {total:.0f} s; raw numbers in {RESULTS.relative_to(ROOT)}")
    dump_json(
        RESULTS,
        {
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "machine": machine,
            "quick": args.quick,
            "seconds": round(total, 1),
            "config": {
                "database_url": stack.database_url,
                "redis_url": stack.redis_url,
                "redis_prefix": stack.env["REDIS_PREFIX"],
                "django_env": stack.env["DJANGO_ENV"],
                "stream_poll_seconds": stack.env["STREAM_POLL_SECONDS"],
                "rate_limit_uploads": stack.env["RATE_LIMIT_UPLOADS"],
                "rate_limit_reads": stack.env["RATE_LIMIT_READS"],
                "nofile_soft_limit": nofile,
                "load_average_at_end": os.getloadavg(),
            },
            "rows": [row.as_dict() for row in rows],
            "figures": {
                r.name: {"seconds": round(r.seconds, 1), "error": r.error, "raw": r.raw}
                for r in results
            },
        },
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
