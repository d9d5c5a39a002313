from __future__ import annotations

from django.apps import AppConfig


class UploadsConfig(AppConfig):
    name = "apps.uploads"
    label = "uploads"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from apps.uploads.handlers import refuse_unsafe_multipart_names

        refuse_unsafe_multipart_names()
