from __future__ import annotations

from datetime import date, timedelta

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from apps.logs.services import logs_daily_summary


class Command(BaseCommand):
    help = "Analyse one UTC day of logs (default: yesterday) and store the summary."

    def add_arguments(self, parser):
        parser.add_argument("--date", help="YYYY-MM-DD")

    def handle(self, *args, **options):
        try:
            day = date.fromisoformat(options["date"]) if options["date"] else None
        except ValueError:
            raise CommandError(f"--date must be YYYY-MM-DD, not {options['date']!r}.") from None
        day = day or (timezone.now() - timedelta(days=1)).date()
        summary = logs_daily_summary(day=day)
        data = summary.data
        return (
            f"Summary of {day}: {data['lines_analyzed']} lines, {data['requests']} requests, "
            f"error rate {data['error_rate']}%, p95 {data['latency_ms']['p95']} ms."
        )
