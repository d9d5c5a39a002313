from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from apps.core.durations import parse_duration
from apps.logs.services import logs_rotate


class Command(BaseCommand):
    help = "Rotate the log file when it is too big or too old (gzip), keeping the newest N."

    def add_arguments(self, parser):
        parser.add_argument("--max-bytes", type=int, default=50 * 1024 * 1024)
        parser.add_argument("--max-age", type=parse_duration, default=parse_duration("1d"))
        parser.add_argument("--keep", type=int, default=10, help="rotated files to keep")

    def handle(self, *args, **options):
        if options["max_bytes"] <= 0 or options["keep"] < 0:
            raise CommandError("--max-bytes must be positive and --keep not negative.")
        counts = logs_rotate(
            max_bytes=options["max_bytes"], max_age=options["max_age"], keep=options["keep"]
        )
        return f"Rotated {counts['rotated']} log file(s), removed {counts['removed']} old one(s)."
