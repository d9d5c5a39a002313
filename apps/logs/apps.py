from __future__ import annotations

from django.apps import AppConfig


class LogsConfig(AppConfig):
    name = "apps.logs"
    label = "logs"
    default_auto_field = "django.db.models.BigAutoField"
