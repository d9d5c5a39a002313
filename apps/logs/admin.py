from __future__ import annotations

from django.contrib import admin

from apps.logs.models import DailySummary, LogRecord


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(LogRecord)
class LogRecordAdmin(ReadOnlyAdmin):
    list_display = (
        "created_at",
        "level",
        "logger",
        "short_message",
        "route",
        "status",
        "request_id",
    )
    list_filter = ("level", "logger", "created_at")
    search_fields = ("message", "request_id", "route")
    date_hierarchy = "created_at"
    list_per_page = 200

    @admin.display(description="Message")
    def short_message(self, record):
        return record.message[:120]


@admin.register(DailySummary)
class DailySummaryAdmin(ReadOnlyAdmin):
    list_display = ("date", "requests", "error_rate", "p95")

    @admin.display(description="Requests")
    def requests(self, summary):
        return summary.data.get("requests")

    @admin.display(description="Error rate %")
    def error_rate(self, summary):
        return summary.data.get("error_rate")

    @admin.display(description="p95 ms")
    def p95(self, summary):
        return (summary.data.get("latency_ms") or {}).get("p95")
