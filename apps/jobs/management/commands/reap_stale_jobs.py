from __future__ import annotations

import time
from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import close_old_connections

from apps.jobs.services import jobs_reap


class Command(BaseCommand):
    help = (
        "Fail (or re-queue once) running jobs whose worker stopped sending heartbeats, and "
        "re-send messages for jobs queued for too long."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--stale-after",
            type=int,
            default=settings.JOB_STALE_AFTER_SECONDS,
            help="seconds without a heartbeat after which a job is stale "
            f"(default {settings.JOB_STALE_AFTER_SECONDS})",
        )

        parser.add_argument("--loop", action="store_true", help="run again every --interval")
        parser.add_argument("--interval", type=int, default=60, help="seconds between runs")

    def handle(self, *args, **options):
        if options["stale_after"] <= 0:
            raise CommandError("--stale-after must be a positive number of seconds.")
        if options["interval"] <= 0:
            raise CommandError("--interval must be a positive number of seconds.")
        stale_after = timedelta(seconds=options["stale_after"])
        while options["loop"]:
            try:
                self.stdout.write(self._summary(jobs_reap(stale_after=stale_after)))
            except Exception as error:  # keep looping: the database may be restarting
                self.stderr.write(f"reaping failed, will try again: {error}")
                close_old_connections()
            time.sleep(options["interval"])
        return self._summary(jobs_reap(stale_after=stale_after))

    @staticmethod
    def _summary(counts: dict[str, int]) -> str:
        return (
            f"Reaped stale jobs: {counts['failed']} failed, {counts['requeued']} re-queued, "
            f"{counts['resent']} queued jobs re-sent."
        )
