from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from apps.logs.services import logs_analyze


class Command(BaseCommand):
    help = (
        "Analyse the log files of the last --hours: level counts, top errors, top endpoints by "
        "route, latency p50/p95/p99, error rate, slow requests."
    )

    def add_arguments(self, parser):
        parser.add_argument("--hours", type=float, default=24.0)
        parser.add_argument("--json", action="store_true", help="print the result as JSON")

    def handle(self, *args, **options):
        if options["hours"] <= 0:
            raise CommandError("--hours must be positive.")
        until = timezone.now()
        result = logs_analyze(since=until - timezone.timedelta(hours=options["hours"]), until=until)
        if options["json"]:
            return json.dumps(result, indent=2)
        latency = result["latency_ms"]
        lines = [
            f"{result['lines_analyzed']} lines, {result['requests']} requests, "
            f"error rate {result['error_rate']}%, slow {result['slow_requests']}",
            f"latency ms p50 {latency['p50']} p95 {latency['p95']} p99 {latency['p99']}",
            "levels: " + ", ".join(f"{k} {v}" for k, v in result["log_levels"].items()),
        ]
        lines += [f"  {e['count']:>6}  {e['route']}" for e in result["top_endpoints"]]
        lines += [f"  error {e['count']:>6}  {e['message']}" for e in result["top_errors"]]
        return "\n".join(lines)
