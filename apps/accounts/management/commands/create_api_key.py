from __future__ import annotations

from datetime import timedelta

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from apps.accounts.models import ApiKey
from apps.accounts.services import api_key_create


class Command(BaseCommand):
    help = "Create an API key for a user and print its secret once (it is not stored)."

    def add_arguments(self, parser):
        parser.add_argument("--user", required=True, help="username of the key's owner")
        parser.add_argument("--name", required=True, help="a label for the key")
        parser.add_argument(
            "--scopes",
            default="generate,read",
            help="comma-separated scopes: generate, read, admin (default: generate,read)",
        )
        parser.add_argument("--expires-in-days", type=int, default=None)
        parser.add_argument("--create-user", action="store_true", help="create the user if missing")

    def handle(self, *args, **options):
        users = get_user_model().objects
        user = users.filter(username=options["user"]).first()
        if user is None:
            if not options["create_user"]:
                raise CommandError(f"No user named {options['user']!r} (use --create-user).")
            user = users.create_user(username=options["user"])
        scopes = [scope.strip() for scope in options["scopes"].split(",") if scope.strip()]
        unknown = sorted(set(scopes) - set(ApiKey.Scope.values))
        if unknown:
            raise CommandError(
                f"Unknown scope {unknown[0]!r}; use {', '.join(ApiKey.Scope.values)}."
            )
        days = options["expires_in_days"]
        if days is not None and days <= 0:
            raise CommandError("--expires-in-days must be a positive number of days.")
        expires_at = timezone.now() + timedelta(days=days) if days else None
        api_key, secret = api_key_create(
            owner=user,
            name=options["name"],
            scopes=scopes,
            expires_at=expires_at,
            enforce_limit=False,  # an operator's command
        )
        self.stderr.write(f"Created key {api_key.prefix} for {user.username}. It is shown once:")
        self.stdout.write(secret)
