from __future__ import annotations

from django.urls import path

from apps.uploads import views

app_name = "uploads"
urlpatterns = [path("images/<uuid:image_id>/", views.source_image, name="image")]
