from __future__ import annotations

from django.contrib import admin

from apps.jobs.models import Artifact, Job, JobEvent, WorkerHeartbeat


class ArtifactInline(admin.TabularInline):
    model = Artifact
    extra = 0
    fields = ("kind", "format", "filename", "size", "expired_at")
    readonly_fields = fields


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ("id", "status", "stage", "progress", "generator", "attempts", "created_at")
    list_filter = ("status", "generator", "created_at")
    search_fields = ("id", "batch__id", "source_image__original_filename", "batch__owner__username")
    date_hierarchy = "created_at"
    inlines = [ArtifactInline]


@admin.register(JobEvent)
class JobEventAdmin(admin.ModelAdmin):
    list_display = ("job", "seq", "batch_seq", "type", "created_at")
    list_filter = ("type",)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(WorkerHeartbeat)
class WorkerHeartbeatAdmin(admin.ModelAdmin):
    list_display = ("worker_id", "hostname", "pid", "embedded", "started_at", "last_seen")
