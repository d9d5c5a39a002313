from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from apps.accounts.models import ApiKey
from apps.accounts.services import api_key_revoke


class Command(BaseCommand):
    help = "Revoke an API key now: it stops working at once."

    def add_arguments(self, parser):
        parser.add_argument("--prefix", required=True, help="the key's readable prefix")

    def handle(self, *args, **options):
        api_key = ApiKey.objects.filter(prefix=options["prefix"]).first()
        if api_key is None:
            raise CommandError(f"No API key with prefix {options['prefix']!r}.")
        api_key_revoke(api_key=api_key)
        return f"Revoked {api_key.prefix} ({api_key.name}) of {api_key.owner.get_username()}."
