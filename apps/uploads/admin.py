from __future__ import annotations

from django.contrib import admin

from apps.uploads.models import Batch, SourceImage


class SourceImageInline(admin.TabularInline):
    model = SourceImage
    extra = 0
    can_delete = False
    fields = ("position", "original_filename", "format", "width", "height", "size")
    readonly_fields = fields


@admin.register(Batch)
class BatchAdmin(admin.ModelAdmin):
    list_display = ("id", "owner", "generator", "created_at")
    list_filter = ("generator", "created_at")
    search_fields = ("id", "owner__username", "images__original_filename")
    date_hierarchy = "created_at"
    inlines = [SourceImageInline]
