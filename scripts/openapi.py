#!/usr/bin/env python
"""The committed OpenAPI contract: export it, check it, compare it with the released one.

    scripts/openapi.py export [--check]     write openapi/v1.json and openapi/v2.json
                                            (--check: change nothing, exit 1 if they differ)
    scripts/openapi.py diff OLD NEW [--allow openapi/CHANGES.md --version v2]
                                            breaking changes from OLD to NEW (exit 1 on any
                                            finding not accepted in the allow file)
    scripts/openapi.py check                export --check, then each version against its
                                            released baseline (v1: nothing may break; v2:
                                            only what openapi/CHANGES.md accepts)
    scripts/openapi.py release [v2]         copy the current export to openapi/released/
                                            (the release step; see openapi/CHANGES.md; v1 is
                                            frozen and refused)

The documents are made by the running code (``image2model.api``), in a fixed environment
independent of the caller's: embedded mode (no PostgreSQL, no Redis) with its data in a
temporary folder, no FAL key, DJANGO_ENV=test. ``make openapi`` runs ``export``.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OPENAPI_DIR = ROOT / "openapi"
RELEASED_DIR = OPENAPI_DIR / "released"
CHANGES = OPENAPI_DIR / "CHANGES.md"
VERSIONS = ("v1", "v2")
# v1 is the frozen contract of the old service: no breaking change is ever accepted.
FROZEN = frozenset({"v1"})

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from scripts.openapi_diff import accepted_changes, check, load  # noqa: E402


def render(schema: dict) -> str:
    """The committed form: stable key order, two-space indent, final newline."""
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _setup_django() -> None:
    """Django in the fixed, services-free environment of an export. Variables are set, not
    removed, so that a .env file (read by the settings for unset variables only) cannot
    change them."""
    data_dir = Path(tempfile.mkdtemp(prefix="image2model-openapi-"))
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "image2model.settings",
            "DJANGO_ENV": "test",
            "DEBUG": "false",
            "DATA_DIR": str(data_dir),
            "DATABASE_URL": f"sqlite:///{data_dir / 'db.sqlite3'}",
            "REDIS_URL": "",
            "BROKER_REDIS_URL": "",
            "CHANNELS_REDIS_URL": "",
            "CACHE_REDIS_URL": "",
            "FAL_KEY": "",
            "LOG_DIR": str(data_dir / "logs"),
        }
    )
    import atexit

    atexit.register(shutil.rmtree, data_dir, ignore_errors=True)
    import django

    django.setup()


def schemas() -> dict[str, dict | None]:
    """Each version's document as the code serves it; None for a version not there yet."""
    from image2model import api

    found: dict[str, dict | None] = {}
    for version in VERSIONS:
        ninja_api = getattr(api, f"api_{version}", None)
        found[version] = None if ninja_api is None else ninja_api.get_openapi_schema()
    return found


def _unified(old: str, new: str, name: str, limit: int = 60) -> str:
    lines = list(
        difflib.unified_diff(
            old.splitlines(keepends=True),
            new.splitlines(keepends=True),
            f"{name} (committed)",
            f"{name} (code)",
        )
    )
    changed = sum(1 for line in lines if line[:1] in "+-" and line[:3] not in ("+++", "---"))
    shown = "".join(lines[:limit])
    more = f"… {len(lines) - limit} more diff lines\n" if len(lines) > limit else ""
    return f"{shown}{more}{changed} lines differ in {name}\n"


def export(check_only: bool, directory: Path = OPENAPI_DIR) -> int:
    """Write (or with ``check_only`` compare) each version's document in ``directory``.
    Needs Django set up (``main`` does it, in the fixed environment)."""
    directory.mkdir(exist_ok=True)
    status = 0
    for version, schema in schemas().items():
        target = directory / f"{version}.json"
        name = f"openapi/{version}.json"
        if schema is None:
            print(
                f"{version}: image2model.api has no api_{version} yet; {name} not exported",
                file=sys.stderr,
            )
            continue
        text = render(schema)
        current = target.read_text() if target.exists() else ""
        if current == text:
            print(f"{name}: up to date")
        elif check_only:
            status = 1
            if not current:
                print(f"{name}: missing; run `make openapi` and commit it", file=sys.stderr)
            else:
                sys.stderr.write(_unified(current, text, name))
                print(f"{name}: out of date; run `make openapi` and commit it", file=sys.stderr)
        else:
            target.write_text(text)
            print(f"{name}: written")
    return status


def _shown(path: Path) -> str:
    try:
        return path.resolve().relative_to(ROOT).as_posix()
    except ValueError:
        return str(path)


def breaking(old_path: Path, new_path: Path, allow: Path | None, version: str | None) -> int:
    allowed: set[str] = set()
    if allow is not None:
        if not version:
            print("--allow needs --version (v2)", file=sys.stderr)
            return 2
        if version in FROZEN:
            print(f"{version} is frozen: its breaking changes cannot be accepted", file=sys.stderr)
        else:
            allowed = accepted_changes(allow.read_text(), version)
    refused, accepted, unused = check(load(old_path), load(new_path), allowed)
    label = f"{_shown(old_path)} -> {_shown(new_path)}"
    for finding in accepted:
        print(f"accepted: {finding}")
    for entry in unused:
        print(f"note: accepted in {allow} but not found: {entry}", file=sys.stderr)
    for finding in refused:
        print(f"BREAKING: {finding}", file=sys.stderr)
    if refused:
        hint = (
            "v1 is frozen: restore the old contract"
            if version in FROZEN
            else f"list each accepted one in {CHANGES.relative_to(ROOT)} (see its header)"
        )
        print(f"{len(refused)} breaking change(s) in {label}; {hint}", file=sys.stderr)
        return 1
    print(f"{label}: no unaccepted breaking change")
    return 0


def check_all() -> int:
    status = export(check_only=True)  # Django is set up by main()
    for version in VERSIONS:
        current, released = OPENAPI_DIR / f"{version}.json", RELEASED_DIR / f"{version}.json"
        if not current.exists():
            continue
        if not released.exists():
            print(f"{version}: no released baseline at {released.relative_to(ROOT)}")
            continue
        allow = None if version in FROZEN else CHANGES
        status |= breaking(released, current, allow, version)
    return status


def release(versions: list[str]) -> int:
    """Make the current export the released baseline of each version (default: every
    exported version that is not frozen). v1's baseline is the old service's contract and
    stays as it is."""
    chosen = versions or [
        v for v in VERSIONS if v not in FROZEN and (OPENAPI_DIR / f"{v}.json").exists()
    ]
    if frozen := [v for v in chosen if v in FROZEN]:
        print(
            f"{', '.join(frozen)} is frozen: its released contract never changes", file=sys.stderr
        )
        return 1
    RELEASED_DIR.mkdir(parents=True, exist_ok=True)
    for version in chosen:
        source = OPENAPI_DIR / f"{version}.json"
        if not source.exists():
            print(f"{version}: {_shown(source)} does not exist", file=sys.stderr)
            return 1
        shutil.copyfile(source, RELEASED_DIR / f"{version}.json")
        print(f"{version}: released {_shown(source)} as {_shown(RELEASED_DIR / f'{version}.json')}")
    print(
        f"Now, in {_shown(CHANGES)}, move the Unreleased notes under the release's heading "
        "and start a new Unreleased section."
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    export_cmd = commands.add_parser("export", help="write openapi/v1.json and openapi/v2.json")
    export_cmd.add_argument("--check", action="store_true", help="exit 1 if they differ")
    diff_cmd = commands.add_parser("diff", help="breaking changes from OLD to NEW")
    diff_cmd.add_argument("old", type=Path)
    diff_cmd.add_argument("new", type=Path)
    diff_cmd.add_argument("--allow", type=Path, help="CHANGES.md listing accepted findings")
    diff_cmd.add_argument("--version", help="the version's section in the allow file (v2)")
    commands.add_parser("check", help="export --check, then each version against its release")
    release_cmd = commands.add_parser("release", help="copy the export to openapi/released/")
    release_cmd.add_argument("versions", nargs="*", help="v1, v2 (default: both)")
    args = parser.parse_args(argv)
    if args.command == "release" and set(args.versions) - set(VERSIONS):
        parser.error(f"release: versions are {', '.join(VERSIONS)}")
    if args.command in ("export", "check"):
        _setup_django()
    if args.command == "export":
        return export(args.check)
    if args.command == "diff":
        return breaking(args.old, args.new, args.allow, args.version)
    if args.command == "check":
        return check_all()
    return release(args.versions)


if __name__ == "__main__":
    sys.exit(main())
