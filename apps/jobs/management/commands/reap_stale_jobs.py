from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

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

    def handle(self, *args, **options):
        if options["stale_after"] <= 0:
            raise CommandError("--stale-after must be a positive number of seconds.")
        counts = jobs_reap(stale_after=timedelta(seconds=options["stale_after"]))
        return (
            f"Reaped stale jobs: {counts['failed']} failed, {counts['requeued']} re-queued, "
            f"{counts['resent']} queued jobs re-sent."
        )
