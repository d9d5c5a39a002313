from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from apps.core.durations import duration_text, parse_duration
from apps.jobs.services import files_cleanup


class Command(BaseCommand):
    help = (
        "Delete stored files (models, previews, originals) of jobs finished longer ago than the "
        "retention period, keeping their records (marked expired)."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--older-than",
            type=parse_duration,
            default=None,
            help=f"e.g. 24h or 7d (default: RETENTION_HOURS = {settings.RETENTION_HOURS}h)",
        )
        parser.add_argument("--dry-run", action="store_true", help="count, delete nothing")
        parser.add_argument("--batch-size", type=int, default=500)

    def handle(self, *args, **options):
        if options["batch_size"] <= 0:
            raise CommandError("--batch-size must be positive.")
        older_than = options["older_than"] or parse_duration(f"{settings.RETENTION_HOURS}h")
        totals = files_cleanup(
            older_than=older_than, dry_run=options["dry_run"], batch_size=options["batch_size"]
        )
        verb = "Would free" if options["dry_run"] else "Freed"
        return (
            f"{verb} {totals['files']} files ({totals['bytes']} bytes) of {totals['jobs']} jobs "
            f"finished more than {duration_text(older_than)} ago."
        )
