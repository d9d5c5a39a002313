"""Views that tell which thread ran them (for test_request_threads)."""

from __future__ import annotations

import threading
import time

from django.db import connection
from django.http import JsonResponse
from django.urls import path


def where(request):
    open_at_start = connection.connection is not None
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse(
        {"thread": threading.get_ident(), "connection_open_at_start": open_at_start}
    )


def slow(request):
    time.sleep(0.3)
    return JsonResponse({"thread": threading.get_ident(), "connection_open_at_start": False})


urlpatterns = [path("where", where), path("slow", slow)]
