from __future__ import annotations

from django.apps import AppConfig


class DownloadsConfig(AppConfig):
    name = "apps.downloads"
    label = "downloads"
    default_auto_field = "django.db.models.BigAutoField"
