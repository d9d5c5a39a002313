from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from apps.core.durations import parse_duration
from apps.logs.services import logs_prune


class Command(BaseCommand):
    help = "Delete rotated log files and stored log records older than --older-than (e.g. 30d)."

    def add_arguments(self, parser):
        parser.add_argument("--older-than", type=parse_duration, default=parse_duration("30d"))
        parser.add_argument("--batch-size", type=int, default=1000)

    def handle(self, *args, **options):
        if options["batch_size"] <= 0:
            raise CommandError("--batch-size must be positive.")
        counts = logs_prune(older_than=options["older_than"], batch_size=options["batch_size"])
        return f"Pruned {counts['files']} log file(s) and {counts['records']} stored record(s)."
