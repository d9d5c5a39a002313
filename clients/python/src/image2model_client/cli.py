"""The ``image2model`` command: upload photos, follow them, fetch the models.

Exit codes (see README.md): 0 ok, 1 a job or batch failed (or the server refused the operation
in the object's current state), 2 usage error, 3 authentication error, 4 not found,
5 server or network error, 130 interrupted.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from image2model_client import errors
from image2model_client._http import ENV_API_KEY, ENV_URL, RetryInfo
from image2model_client._version import __version__
from image2model_client.client import Client
from image2model_client.models import Artifact, Batch, Event, Job

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_AUTH = 3
EXIT_NOT_FOUND = 4
EXIT_SERVER = 5
EXIT_INTERRUPTED = 130

EPILOG = f"""\
The server URL and API key come from --url and --api-key, or from the environment:
  {ENV_URL}      for example http://127.0.0.1:8000
  {ENV_API_KEY}  a key from the server's API keys page (/account/keys/)

exit codes:
  0  ok
  1  a job or batch failed or was canceled, or the server refused the operation
     in the object's current state (for example cancel of a finished job)
  2  usage error: bad arguments, no server URL, a file or parameter refused (400, 413, 422)
  3  authentication error: no API key, a wrong/revoked/expired key, or a missing scope
  4  not found: no such batch or job (or someone else's)
  5  server or network error: cannot connect, timeout, 5xx, still rate limited
     after the retries, a download whose checksum does not match
"""


class UsageError(Exception):
    """A mistake on the command line, found before anything was sent."""


def _fail(message: str, code: int) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code)


def exit_code_for(error: BaseException) -> int:
    if isinstance(error, (errors.Unauthorized, errors.Forbidden)):
        return EXIT_AUTH
    if isinstance(error, errors.NotFound):
        return EXIT_NOT_FOUND
    if isinstance(error, (errors.BadRequest, errors.PayloadTooLarge, errors.ValidationError)):
        return EXIT_USAGE
    if isinstance(error, (errors.Conflict, errors.Gone)):
        return EXIT_FAILED
    if isinstance(error, errors.ApiError):
        return EXIT_SERVER if error.status >= 500 or error.status == 429 else EXIT_USAGE
    if isinstance(error, (errors.TransportError, errors.ChecksumMismatch)):
        return EXIT_SERVER
    return EXIT_SERVER


# ---------------------------------------------------------------------------------------------
# Output helpers


def _human_size(size: int | None) -> str:
    if size is None:
        return "?"
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"  # pragma: no cover


def _number(value: float | None) -> str:
    if value is None:
        return ""
    return str(int(value)) if float(value).is_integer() else str(value)


def _table(rows: Sequence[Sequence[Any]], header: Sequence[str] | None = None) -> str:
    cells = [[("" if c is None else str(c)) for c in row] for row in rows]
    if header:
        cells.insert(0, list(header))
    if not cells:
        return ""
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)).rstrip() for row in cells
    ]
    return "\n".join(lines)


def _dump(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str))


def _job_line(job: Job) -> list[Any]:
    models = ", ".join(f"{a.filename} ({_human_size(a.size)})" for a in job.models)
    detail = models or (job.error.message if job.error else job.stage)
    progress = "" if job.progress is None else f"{job.progress}%"
    return [job.file_name, job.status, progress, detail, job.id]


def _print_batch(batch: Batch) -> None:
    created = batch.created_at.isoformat(timespec="seconds") if batch.created_at else ""
    progress = "" if batch.progress is None else f"{batch.progress}%"
    print(f"batch {batch.id}  {batch.status}  {progress}  {batch.generator}  created {created}")
    c = batch.counts
    print(
        f"  {c.total} files: {c.succeeded} succeeded, {c.failed} failed, {c.canceled} canceled, "
        f"{c.running} running, {c.queued} queued"
    )
    if batch.jobs:
        print(
            _table([_job_line(j) for j in batch.jobs], ["FILE", "STATUS", "DONE", "RESULT", "JOB"])
        )


def _print_job(job: Job) -> None:
    print(f"job {job.id}  {job.status}  stage {job.stage}  progress {job.progress}%")
    print(f"  file {job.file_name}  batch {job.batch_id}  generator {job.generator}")
    print(f"  attempts {job.attempts}")
    if job.queue_position is not None:
        print(f"  queue position {job.queue_position}")
    if job.eta_seconds is not None:
        print(f"  about {job.eta_seconds} s left")
    if job.error:
        print(f"  error {job.error.code}: {job.error.message}")
    for artifact in job.artifacts:
        print(
            f"  {artifact.kind} {artifact.filename} {_human_size(artifact.size)} {artifact.sha256}"
        )


def _parse_param(text: str) -> tuple[str, Any]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise UsageError(f"--param wants name=value, not {text!r}")
    try:
        parsed = json.loads(value)
    except ValueError:
        parsed = value
    return name.strip(), parsed


# ---------------------------------------------------------------------------------------------
# Progress display (rich)


class _Progress:
    """Per-file bars on stderr: bytes while uploading, then each job's generation progress."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._progress = None
        self._tasks: dict[Any, Any] = {}
        if enabled:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TaskProgressColumn(),
                TextColumn("{task.fields[note]}"),
                console=Console(stderr=True),
                transient=False,
            )

    def __enter__(self) -> _Progress:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def bar(self, key: Any, description: str, total: float, note: str = "") -> None:
        if self._progress is not None and key not in self._tasks:
            self._tasks[key] = self._progress.add_task(description, total=total, note=note)

    def update(self, key: Any, completed: float, note: str | None = None) -> None:
        if self._progress is None or key not in self._tasks:
            return
        fields = {} if note is None else {"note": note}
        self._progress.update(self._tasks[key], completed=completed, **fields)

    def log(self, message: str) -> None:
        if self._progress is not None:
            self._progress.console.print(message, markup=False, highlight=False)
        else:
            print(message, file=sys.stderr)


# ---------------------------------------------------------------------------------------------
# Commands


def _find(client: Client, args: argparse.Namespace) -> Batch | Job:
    """The batch or job named by ``args.id`` (a batch unless --job, or unless no such batch)."""
    if args.job:
        return client.get_job(args.id)
    try:
        return client.get_batch(args.id)
    except errors.NotFound:
        if args.batch:
            raise
        return client.get_job(args.id)


def _follow(client: Client, batch: Batch, progress: _Progress) -> Batch:
    names = {job.id: job.file_name for job in batch.jobs}
    for job in batch.jobs:
        progress.bar(("job", job.id), f"generating {job.file_name}", 100, note=job.status)

    def on_event(event: Event) -> None:
        if event.name != "file_update" or not isinstance(event.data, dict):
            return
        job_id = event.data.get("job_id")
        key = ("job", job_id)
        name = event.data.get("filename") or names.get(job_id, job_id)
        progress.bar(key, f"generating {name}", 100)
        status = event.data.get("status") or ""
        note = event.data.get("stage") or status
        if status in ("failed", "cancelled", "canceled"):
            note = status
        progress.update(key, event.data.get("progress") or 0, note=note)

    final = client.wait_for_batch(batch.id, on_event=on_event)
    for job in final.jobs:
        progress.update(("job", job.id), job.progress or 0, note=job.status)
    return final


def _download(
    client: Client, target: Batch | Job, out: Path, progress: _Progress, kinds=("model",)
) -> list[Path]:
    def on_progress(artifact: Artifact, written: int, total: int) -> None:
        key = ("download", artifact.id)
        progress.bar(key, f"downloading {artifact.filename}", total or 1)
        progress.update(key, written)

    if isinstance(target, Batch):
        return client.download_batch(target, out, kinds=kinds, on_progress=on_progress)
    return client.download_job(target, out, kinds=kinds, on_progress=on_progress)


def cmd_upload(client: Client, args: argparse.Namespace) -> int:
    params: dict[str, Any] | None = None
    if args.params_json:
        try:
            params = json.loads(args.params_json)
        except ValueError as error:
            raise UsageError(f"--params-json is not JSON: {error}") from error
        if not isinstance(params, dict):
            raise UsageError("--params-json must be a JSON object")
    for text in args.param or ():
        name, value = _parse_param(text)
        params = {**(params or {}), name: value}
    paths = [Path(p) for p in args.photos]
    for path in paths:
        if not path.is_file():
            raise UsageError(f"no such file: {path}")
    wait = args.wait or args.out is not None

    with _Progress(args.progress) as progress:
        sizes = {i: p.stat().st_size for i, p in enumerate(paths)}
        for i, path in enumerate(paths):
            progress.bar(("upload", i), f"uploading  {path.name}", sizes[i] or 1, note="")

        def on_upload(index: int, sent: int, total: int) -> None:
            progress.update(("upload", index), sent)

        batch = client.create_batch(
            paths,
            generator=args.generator,
            params=params,
            idempotency_key=args.idempotency_key,
            on_upload_progress=on_upload,
        )
        for i in sizes:
            progress.update(("upload", i), sizes[i] or 1, note="sent")
        if not wait:
            progress.log(f"batch {batch.id} created; follow it with: image2model status {batch.id}")
        else:
            batch = _follow(client, batch, progress)
        paths_out = _download(client, batch, args.out, progress) if args.out is not None else []

    if args.json:
        _dump({**batch.raw, "downloaded": [str(p) for p in paths_out]})
    else:
        _print_batch(batch)
        for path in paths_out:
            print(f"saved {path}")
    if wait and batch.status != "completed":
        print(f"error: batch {batch.id} ended {batch.status}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def cmd_status(client: Client, args: argparse.Namespace) -> int:
    target = _find(client, args)
    if args.json:
        _dump(target.raw)
    elif isinstance(target, Batch):
        _print_batch(target)
    else:
        _print_job(target)
    return EXIT_OK


def cmd_list(client: Client, args: argparse.Namespace) -> int:
    filters = {"status": args.status, "generator": args.generator}
    page_size = 100 if args.all else min(args.limit, 100)
    if args.jobs or args.batch_id:
        items: Any = client.list_jobs(limit=page_size, batch_id=args.batch_id, **filters)
    else:
        items = client.list_batches(limit=page_size, **filters)
    if not args.all:
        items = itertools.islice(items, args.limit)
    items = list(items)
    if args.json:
        _dump([item.raw for item in items])
        return EXIT_OK
    if not items:
        print("nothing found", file=sys.stderr)
        return EXIT_OK
    if isinstance(items[0], Job):
        rows = [
            [j.id, j.status, f"{j.progress or 0}%", j.file_name, j.generator, j.batch_id]
            for j in items
        ]
        print(_table(rows, ["JOB", "STATUS", "PROGRESS", "FILE", "GENERATOR", "BATCH"]))
    else:
        rows = [
            [
                b.id,
                b.status,
                f"{b.progress or 0}%",
                f"{b.counts.succeeded}/{b.counts.total}",
                b.generator,
                b.created_at.isoformat(timespec="seconds") if b.created_at else "",
            ]
            for b in items
        ]
        print(_table(rows, ["BATCH", "STATUS", "PROGRESS", "DONE", "GENERATOR", "CREATED"]))
    return EXIT_OK


def cmd_download(client: Client, args: argparse.Namespace) -> int:
    target = _find(client, args)
    kinds = ("model", "preview") if args.previews else ("model",)
    with _Progress(args.progress) as progress:
        paths = _download(client, target, args.out, progress, kinds=kinds)
    if args.json:
        _dump([str(p) for p in paths])
    for path in paths if not args.json else ():
        print(f"saved {path}")
    if not paths:
        print(f"error: {target.id} has no models to download yet", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _act(action: str) -> Callable[[Client, argparse.Namespace], int]:
    def run(client: Client, args: argparse.Namespace) -> int:
        if not args.job:
            try:
                result: Any = getattr(client, f"{action}_batch")(args.id)
            except errors.NotFound:
                if args.batch:
                    raise
            else:
                return _report(action, "batch", args, result)
        result = getattr(client, f"{action}_job")(args.id)
        return _report(action, "job", args, result)

    return run


def _report(action: str, kind: str, args: argparse.Namespace, result: Batch | Job | None) -> int:
    if args.json:
        _dump(result.raw if result is not None else {"id": args.id, "deleted": True})
        return EXIT_OK
    if result is None:
        print(f"{kind} {args.id} deleted")
    else:
        print(f"{action}: {kind} {args.id} is now {result.status}")
    if isinstance(result, Batch):
        _print_batch(result)
    elif isinstance(result, Job):
        _print_job(result)
    return EXIT_OK


def cmd_generators(client: Client, args: argparse.Namespace) -> int:
    generators = client.generators()
    if args.json:
        _dump([g.raw for g in generators])
        return EXIT_OK
    for g in generators:
        state = "available" if g.available else f"unavailable: {g.unavailable_reason or '?'}"
        print(f"{g.id}  ({g.name})  {state}")
        if g.description:
            print(f"    {g.description}")
        for p in g.params:
            limits = []
            if p.minimum is not None or p.maximum is not None:
                limits.append(f"{_number(p.minimum)}..{_number(p.maximum)}")
            if p.choices:
                limits.append("|".join(str(c) for c in p.choices))
            extra = f" [{', '.join(limits)}]" if limits else ""
            default = json.dumps(p.default)
            print(f"    --param {p.name}=<{p.type}>{extra}  default {default}  {p.description}")
    return EXIT_OK


def cmd_events(client: Client, args: argparse.Namespace) -> int:
    kw = {"job_id": args.id} if args.job else {"batch_id": args.id}
    last = None
    for event in client.follow_events(last_event_id=args.last_event_id, **kw):
        print(json.dumps({"event": event.name, "id": event.id, "data": event.data}), flush=True)
        last = event
    return EXIT_FAILED if last is not None and last.name == "task_failed" else EXIT_OK


# ---------------------------------------------------------------------------------------------
# Parser


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    # Accepted before and after the command; SUPPRESS keeps a sub-command's default from
    # overwriting a value given before it.
    common.add_argument("--url", default=argparse.SUPPRESS, help=f"server URL (${ENV_URL})")
    common.add_argument("--api-key", default=argparse.SUPPRESS, help=f"API key (${ENV_API_KEY})")
    common.add_argument(
        "--timeout", type=float, default=argparse.SUPPRESS, help="seconds per request (60)"
    )
    common.add_argument(
        "--retries",
        type=int,
        default=argparse.SUPPRESS,
        help="retries after 429/503 or a lost connection (3)",
    )
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON")
    common.add_argument(
        "--no-progress",
        dest="progress",
        action="store_false",
        default=argparse.SUPPRESS,
        help="no progress bars",
    )
    common.add_argument(
        "-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="no retry notes"
    )

    parser = argparse.ArgumentParser(
        prog="image2model",
        description="Turn photos into 3D models with an image2model server (API v2).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, help_text: str, func, description: str | None = None):
        p = sub.add_parser(
            name,
            help=help_text,
            description=description or help_text,
            parents=[common],
            formatter_class=argparse.RawDescriptionHelpFormatter,
            epilog=EPILOG,
        )
        p.set_defaults(func=func)
        return p

    def which(p: argparse.ArgumentParser) -> None:
        p.add_argument("id", help="a batch id or a job id")
        group = p.add_mutually_exclusive_group()
        group.add_argument("--job", action="store_true", help="the id is a job's")
        group.add_argument("--batch", action="store_true", help="the id is a batch's")

    p = add(
        "upload",
        "upload photos as one batch",
        cmd_upload,
        "Upload photos as one batch (one job per photo). While uploading, one bar per file "
        "shows the bytes read into the request; with --wait, one bar per file then shows "
        "that file's generation progress from the batch's event stream.",
    )
    p.add_argument("photos", nargs="+", metavar="PHOTO", help="image files (1 to 25)")
    p.add_argument("-g", "--generator", help="generator id (see `image2model generators`)")
    p.add_argument(
        "-p",
        "--param",
        action="append",
        metavar="NAME=VALUE",
        help="a generator parameter; repeatable. VALUE is read as JSON when it is JSON "
        "(5000, true), else as text",
    )
    p.add_argument("--params-json", metavar="JSON", help="all parameters as one JSON object")
    p.add_argument("-w", "--wait", action="store_true", help="wait until the batch has finished")
    p.add_argument(
        "-o", "--out", type=Path, metavar="DIR", help="download the models to DIR (implies --wait)"
    )
    p.add_argument("--idempotency-key", help="reuse a key to make a retried upload safe")

    p = add("status", "show a batch or a job", cmd_status)
    which(p)

    p = add("list", "list batches (or jobs), newest first", cmd_list)
    p.add_argument("--jobs", action="store_true", help="list jobs instead of batches")
    p.add_argument("--batch-id", help="only the jobs of this batch (implies --jobs)")
    p.add_argument("--status", help="only this status")
    p.add_argument("--generator", help="only this generator")
    p.add_argument("-n", "--limit", type=int, default=20, help="how many to show (20)")
    p.add_argument("--all", action="store_true", help="show every one, page after page")

    p = add("download", "download the models of a batch or a job", cmd_download)
    which(p)
    p.add_argument("-o", "--out", type=Path, default=Path("."), metavar="DIR", help="folder (.)")
    p.add_argument("--previews", action="store_true", help="also the preview images")

    p = add("cancel", "cancel a batch's unfinished jobs, or one job", _act("cancel"))
    which(p)
    p = add("retry", "run failed and canceled jobs again", _act("retry"))
    which(p)
    p = add("delete", "delete a finished batch or job with its files", _act("delete"))
    which(p)

    add("generators", "list the generators and their parameters", cmd_generators)

    p = add("events", "print a batch's (or job's) events as JSON lines", cmd_events)
    p.add_argument("id", help="a batch id (or a job id with --job)")
    p.add_argument("--job", action="store_true", help="the id is a job's")
    p.add_argument("--last-event-id", help="resume after this event id")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    defaults = {
        "url": None,
        "api_key": None,
        "timeout": 60.0,
        "retries": 3,
        "json": False,
        "progress": True,
        "quiet": False,
    }
    for name, value in defaults.items():
        if not hasattr(args, name):
            setattr(args, name, value)
    if args.progress and (args.json or not sys.stderr.isatty()):
        args.progress = False
    if args.command == "list" and args.limit < 1:
        parser.error("--limit must be at least 1")
    if args.retries < 0:
        parser.error("--retries must be 0 or more")

    def on_retry(info: RetryInfo) -> None:
        if args.quiet:
            return
        what = f"HTTP {info.status}" if info.status else type(info.error).__name__
        print(f"note: {what}; retrying in {info.delay:.1f} s", file=sys.stderr)

    try:
        try:
            client = Client(
                args.url,
                args.api_key,
                timeout=args.timeout,
                max_attempts=args.retries + 1,
                on_retry=on_retry,
            )
        except errors.ConfigurationError as error:
            _fail(str(error), EXIT_USAGE)
        if client._config.api_key is None:
            _fail(f"no API key: pass --api-key or set {ENV_API_KEY}", EXIT_AUTH)
        with client:
            return args.func(client, args)
    except UsageError as error:
        _fail(str(error), EXIT_USAGE)
    except errors.ApiError as error:
        _fail(error.describe(), exit_code_for(error))
    except errors.Image2ModelError as error:
        _fail(str(error), exit_code_for(error))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `image2model list | head`: the reader has gone, not an error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK


def run() -> NoReturn:
    sys.exit(main())


if __name__ == "__main__":
    run()
