from __future__ import annotations

from django.urls import path

from apps.jobs import views

app_name = "jobs"
urlpatterns = [
    path("upload/", views.upload_page, name="upload"),
    path("history/", views.history_page, name="history"),
    path("batches/<uuid:batch_id>/", views.batch_page, name="batch"),
    path("batches/<uuid:batch_id>/cancel/", views.batch_cancel, name="batch_cancel"),
    path("batches/<uuid:batch_id>/retry/", views.batch_retry, name="batch_retry"),
    path("jobs/<uuid:job_id>/", views.job_page, name="job"),
]
