from __future__ import annotations

from django.contrib import admin
from django.urls import include, path
from django_prometheus import exports

from apps.accounts import views as account_views
from apps.console import views as console_views
from image2model.api import api_v1, api_v2

handler500 = "apps.console.views.server_error"

urlpatterns = [
    path("", console_views.home, name="home"),
    path("health", console_views.health, name="health"),
    path("metrics", exports.ExportToDjangoView, name="metrics"),
    path("api/v1/health/metrics", exports.ExportToDjangoView, name="api-v1-metrics"),
    path("api/v1/", api_v1.urls),
    path("api/v2/", api_v2.urls),
    path("accounts/login/", account_views.login, name="login"),  # throttled sign-in
    path("accounts/", include("django.contrib.auth.urls")),
    path("account/", include("apps.accounts.urls")),
    path("", include("apps.jobs.urls")),
    path("", include("apps.uploads.urls")),
    path("admin/", admin.site.urls),
]
