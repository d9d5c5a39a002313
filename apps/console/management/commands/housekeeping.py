from __future__ import annotations

import time

from django.core.management.base import BaseCommand, CommandError
from django.db import close_old_connections

from apps.console.services import housekeeping_run


class Command(BaseCommand):
    help = (
        "Run every housekeeping job once (retention cleanup, log rotation and pruning, reaping "
        "stale jobs), or forever with --loop (the scheduler process)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--loop", action="store_true")
        parser.add_argument("--interval", type=int, default=300, help="seconds between runs")

    def handle(self, *args, **options):
        if options["interval"] <= 0:
            raise CommandError("--interval must be a positive number of seconds.")
        while options["loop"]:
            try:
                self.stdout.write(self._summary(housekeeping_run()))
            except Exception as error:  # keep the scheduler alive through a restart of a service
                self.stderr.write(f"housekeeping failed, will try again: {error}")
                close_old_connections()
            time.sleep(options["interval"])
        return self._summary(housekeeping_run())

    @staticmethod
    def _summary(result: dict) -> str:
        failed = [name for name, value in result.items() if "error" in value]
        if failed:
            details = "; ".join(f"{name}: {result[name]['error']}" for name in failed)
            raise CommandError(f"Housekeeping steps failed ({details}); the others ran.")
        cleanup, rotate, prune, reap = (result[k] for k in ("cleanup", "rotate", "prune", "reap"))
        return (
            f"Housekeeping: freed {cleanup['files']} files ({cleanup['bytes']} bytes); "
            f"rotated {rotate['rotated']} log(s); pruned {prune['files']} log file(s) and "
            f"{prune['records']} record(s); reaped {reap['failed']} failed, "
            f"{reap['requeued']} re-queued, {reap['resent']} re-sent; "
            f"forgot {result['idempotency']['deleted']} idempotency key(s) past 24 hours."
        )
