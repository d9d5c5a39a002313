"""The admin site, with an operations console: dashboard, clean up now, log analysis."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path
from django.utils import timezone

from apps.accounts import services as account_services
from apps.console.dashboard import dashboard_context
from apps.jobs import services as job_services
from apps.logs import services as log_services


class ConsoleAdminSite(admin.AdminSite):
    site_header = "image2model console"
    site_title = "image2model console"
    index_title = "Operations"
    index_template = "admin/console_index.html"

    def get_urls(self):
        return [
            path("console/cleanup/", self.admin_view(self.cleanup_view), name="console_cleanup"),
            path("console/logs/", self.admin_view(self.logs_view), name="console_logs"),
            *super().get_urls(),
        ]

    def login(self, request: HttpRequest, extra_context=None):
        # The same sign-in limits as the pages' sign-in form.
        if account_services.login_attempt_limited(request):
            response = TemplateResponse(request, "registration/login_throttled.html", status=429)
            response["Retry-After"] = "60"
            return response
        return super().login(request, extra_context)

    def index(self, request: HttpRequest, extra_context=None):
        return super().index(request, {**(extra_context or {}), **dashboard_context()})

    def cleanup_view(self, request: HttpRequest):
        """GET: what a cleanup would delete now (dry run). POST: delete it (superusers only)."""
        if request.method == "POST" and not request.user.is_superuser:
            raise PermissionDenied("Only superusers may delete stored files.")
        older_than = timedelta(hours=settings.RETENTION_HOURS)
        if request.method == "POST":
            totals = job_services.files_cleanup(older_than=older_than)
            messages.success(
                request,
                f"Freed {totals['files']} files ({totals['bytes']} bytes) of "
                f"{totals['jobs']} jobs.",
            )
            return redirect("admin:index")
        preview = job_services.files_cleanup(older_than=older_than, dry_run=True)
        return TemplateResponse(
            request,
            "admin/console_cleanup.html",
            {
                **self.each_context(request),
                "title": "Clean up now",
                "preview": preview,
                "retention_hours": settings.RETENTION_HOURS,
            },
        )

    def logs_view(self, request: HttpRequest):
        try:
            hours = min(24 * 31, max(1, int(request.GET.get("hours", 24))))
        except ValueError:
            hours = 24
        until = timezone.now()
        result = log_services.logs_analyze(since=until - timedelta(hours=hours), until=until)
        peak = max([row["requests"] for row in result["per_hour"]] or [1])
        chart = [
            {
                **row,
                "height": round(row["requests"] / peak * 100, 1),
                "error_height": round(row["errors"] / peak * 100, 1),
            }
            for row in result["per_hour"]
        ]
        return TemplateResponse(
            request,
            "admin/console_logs.html",
            {
                **self.each_context(request),
                "title": "Log analysis",
                "hours": hours,
                "result": result,
                "chart": chart,
            },
        )
