from __future__ import annotations

from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError

from apps.accounts.models import ApiKey
from apps.accounts.services import api_key_rotate


class Command(BaseCommand):
    help = (
        "Issue a successor for an API key and print its secret once. The old key keeps working "
        "for --grace-hours (default 24), then stops."
    )

    def add_arguments(self, parser):
        parser.add_argument("--prefix", required=True, help="the key's readable prefix")
        parser.add_argument("--grace-hours", type=float, default=24.0)

    def handle(self, *args, **options):
        if options["grace_hours"] < 0:
            raise CommandError("--grace-hours must not be negative.")
        api_key = ApiKey.objects.filter(prefix=options["prefix"]).first()
        if api_key is None:
            raise CommandError(f"No API key with prefix {options['prefix']!r}.")
        try:
            new_key, secret = api_key_rotate(
                api_key=api_key, grace=timedelta(hours=options["grace_hours"])
            )
        except ValueError as error:
            raise CommandError(str(error)) from None
        self.stderr.write(
            f"Rotated {api_key.prefix} to {new_key.prefix}; the old key stops at "
            f"{api_key.revoked_at:%Y-%m-%d %H:%M} UTC. The new secret is shown once:"
        )
        self.stdout.write(secret)
