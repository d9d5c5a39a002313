from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.template.defaultfilters import filesizeformat
from django.urls import reverse
from django.utils.html import format_html

from apps.core.admin_actions import DeletesDependentsMixin, confirmed_action
from apps.jobs import services
from apps.jobs.models import Artifact, Job, JobEvent, WorkerHeartbeat


def _thumbnail(image) -> str:
    url = reverse("uploads:image", args=[image.pk])
    return format_html('<img src="{}" alt="" style="height:48px;border-radius:4px">', url)


class ArtifactInline(admin.TabularInline):
    model = Artifact
    extra = 0
    can_delete = False
    fields = ("kind", "format", "filename", "size", "face_count", "expired_at")
    readonly_fields = fields


@confirmed_action(
    "Cancel selected jobs", question="Cancel these jobs? Running ones stop at their next check."
)
def cancel_jobs(modeladmin, request, queryset: QuerySet):
    jobs = list(queryset.exclude(status__in=Job.TERMINAL))
    for job in jobs:
        services.job_cancel(job=job)
    return f"Canceled {len(jobs)} job(s)."


@confirmed_action("Retry selected jobs", question="Run these failed or canceled jobs again?")
def retry_jobs(modeladmin, request, queryset: QuerySet):
    retried = [job for job in queryset if services.job_retry(job=job) is not None]
    return f"Retrying {len(retried)} job(s)."


@confirmed_action(
    "Delete files of selected jobs",
    question="Delete the stored models and previews? The records stay, marked expired.",
    danger=True,
)
def delete_job_files(modeladmin, request, queryset: QuerySet):
    totals = services.jobs_files_delete(job_ids=list(queryset.values_list("pk", flat=True)))
    return f"Deleted {totals['files']} file(s), {filesizeformat(totals['bytes'])}."


@admin.register(Job)
class JobAdmin(DeletesDependentsMixin, admin.ModelAdmin):
    list_display = (
        "thumbnail",
        "file_name",
        "status",
        "stage",
        "progress",
        "generator",
        "attempts",
        "error_code",
        "owner",
        "created_at",
    )
    list_filter = ("status", "generator", "error_code", "created_at", "batch__owner")
    search_fields = (
        "id",
        "batch__id",
        "source_image__original_filename",
        "batch__owner__username",
        "upstream_request_id",
    )
    date_hierarchy = "created_at"
    list_select_related = ("source_image", "batch__owner")
    readonly_fields = (
        "batch_link",
        "thumbnail",
        "status",
        "stage",
        "progress",
        "generator",
        "requested_generator",
        "model",
        "params",
        "upstream_request_id",
        "upstream_submitted_at",
        "attempts",
        "error_code",
        "error_message",
        "heartbeat_at",
        "started_at",
        "finished_at",
        "created_at",
        "updated_at",
    )
    exclude = (
        "batch",
        "source_image",
        "event_seq",
        "cancel_requested",
        "requeued_by_reaper",
        "queue_position",
        "message",
    )
    inlines = [ArtifactInline]
    actions = [cancel_jobs, retry_jobs, delete_job_files]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        # A job is deleted (row, events and stored outputs) only once it has finished: a worker
        # may still be writing to an unfinished one. Cancel it first. This also guards batches,
        # whose deletion reaches their jobs.
        if obj is not None and obj.status not in Job.TERMINAL:
            return False
        return super().has_delete_permission(request, obj)

    @admin.display(description="")
    def thumbnail(self, job):
        return _thumbnail(job.source_image)

    @admin.display(description="File", ordering="source_image__original_filename")
    def file_name(self, job):
        return job.source_image.original_filename

    @admin.display(description="Owner", ordering="batch__owner__username")
    def owner(self, job):
        return job.batch.owner

    @admin.display(description="Batch")
    def batch_link(self, job):
        url = reverse("admin:uploads_batch_change", args=[job.batch_id])
        return format_html('<a href="{}">{}</a>', url, job.batch_id)


@admin.register(Artifact)
class ArtifactAdmin(admin.ModelAdmin):
    list_display = (
        "filename",
        "kind",
        "format",
        "size",
        "face_count",
        "job_link",
        "created_at",
        "expired_at",
    )
    list_filter = ("kind", "format", "expired_at", "created_at")
    search_fields = ("filename", "job__id", "job__batch__owner__username")
    date_hierarchy = "created_at"
    readonly_fields = [f.name for f in Artifact._meta.fields]
    # Outputs go with their job; on their own, "Delete files" on the job keeps the record.
    deleted_with_parent = True

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="Job")
    def job_link(self, artifact):
        url = reverse("admin:jobs_job_change", args=[artifact.job_id])
        return format_html('<a href="{}">{}</a>', url, artifact.job_id)


@admin.register(JobEvent)
class JobEventAdmin(admin.ModelAdmin):
    list_display = ("job", "seq", "batch_seq", "type", "created_at")
    list_filter = ("type", "created_at")
    search_fields = ("job__id", "batch__id")
    list_per_page = 200
    deleted_with_parent = True  # the log is append-only; it goes only with its job

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(WorkerHeartbeat)
class WorkerHeartbeatAdmin(admin.ModelAdmin):
    list_display = ("worker_id", "hostname", "pid", "embedded", "started_at", "last_seen")

    def has_add_permission(self, request):
        return False
