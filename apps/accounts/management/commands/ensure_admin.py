from __future__ import annotations

import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = (
        "Create the first admin account when no superuser exists, and say how to sign in. "
        "The generated password is printed and kept in DATA_DIR/initial-admin-password."
    )

    def add_arguments(self, parser):
        parser.add_argument("--username", default="admin")
        parser.add_argument("--url", default="http://127.0.0.1:8000/")

    def handle(self, *args, **options):
        users = get_user_model().objects
        password_file = settings.DATA_DIR / "initial-admin-password"
        url = options["url"]
        if users.filter(is_superuser=True).exists():
            hint = f" (first password kept in {password_file})" if password_file.exists() else ""
            return f"Sign in at {url}accounts/login/ with your admin account{hint}."
        password = secrets.token_urlsafe(12)
        users.create_superuser(username=options["username"], email="", password=password)
        settings.DATA_DIR.mkdir(parents=True, exist_ok=True)
        password_file.write_text(password + "\n")
        password_file.chmod(0o600)
        return (
            f"Created admin account. Sign in at {url}accounts/login/ as "
            f"user '{options['username']}' with password '{password}' "
            f"(also saved in {password_file}; change it in {url}admin/)."
        )
