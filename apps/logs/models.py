from __future__ import annotations

from django.db import models


class LogRecord(models.Model):
    """A warning or error, stored for the admin (written off the request path)."""

    created_at = models.DateTimeField(db_index=True)
    level = models.CharField(max_length=10, db_index=True)
    logger = models.CharField(max_length=100)
    message = models.TextField()
    request_id = models.CharField(max_length=128, blank=True, db_index=True)
    route = models.CharField(max_length=200, blank=True)
    method = models.CharField(max_length=10, blank=True)
    status = models.PositiveSmallIntegerField(null=True, blank=True)
    user_id = models.CharField(max_length=64, blank=True)
    traceback = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.level} {self.logger}: {self.message[:60]}"


class DailySummary(models.Model):
    """The analysis of one day of logs, kept after the files are rotated away."""

    date = models.DateField(unique=True)
    data = models.JSONField()
    created_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-date"]
        verbose_name_plural = "daily summaries"

    def __str__(self) -> str:
        return f"Summary of {self.date}"
