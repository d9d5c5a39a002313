from __future__ import annotations

from django.urls import path

from apps.accounts import views

app_name = "accounts"
urlpatterns = [
    path("keys/", views.keys_page, name="keys"),
    path("keys/<str:prefix>/revoke/", views.key_revoke, name="key_revoke"),
]
