from __future__ import annotations

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html

from apps.core.admin_actions import DeletesDependentsMixin
from apps.uploads.models import Batch, SourceImage


class SourceImageInline(admin.TabularInline):
    model = SourceImage
    extra = 0
    can_delete = False
    fields = (
        "thumbnail",
        "position",
        "original_filename",
        "format",
        "width",
        "height",
        "size",
        "expired_at",
    )
    readonly_fields = fields

    @admin.display(description="")
    def thumbnail(self, image):
        url = reverse("uploads:image", args=[image.pk])
        return format_html('<img src="{}" alt="" style="height:48px;border-radius:4px">', url)


@admin.register(Batch)
class BatchAdmin(DeletesDependentsMixin, admin.ModelAdmin):
    list_display = ("id", "owner", "generator", "files", "jobs_link", "created_at")
    list_filter = ("generator", "created_at", "owner")
    search_fields = ("id", "owner__username", "images__original_filename")
    date_hierarchy = "created_at"
    readonly_fields = ("owner", "api_key", "generator", "params", "face_limit", "created_at")
    exclude = ("event_seq",)
    inlines = [SourceImageInline]

    def has_add_permission(self, request):
        return False

    @admin.display(description="Files")
    def files(self, batch):
        return batch.images.count()

    @admin.display(description="Jobs")
    def jobs_link(self, batch):
        url = reverse("admin:jobs_job_changelist") + f"?batch__id__exact={batch.pk}"
        return format_html('<a href="{}">jobs</a>', url)
