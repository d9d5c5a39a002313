"""ASGI entry point: HTTP and WebSocket through Channels, served by daphne."""

from __future__ import annotations

import gc
import os

from image2model.request_threads import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "image2model.settings")
django_asgi_app = get_asgi_application()  # Django's, on kept request threads (decision 0022)

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import get_resolver, re_path  # noqa: E402

from apps.core.websocket import AllowedHostsOrNoOriginValidator  # noqa: E402
from apps.jobs.routing import http_routes, websocket_routes  # noqa: E402
from image2model.daphne_patch import daphne_body_fed_lazily, daphne_form_parsing_off  # noqa: E402
from image2model.embedded import embedded_workers_start  # noqa: E402

daphne_form_parsing_off()
daphne_body_fed_lazily()

application = ProtocolTypeRouter(
    {
        # Streams first; everything else goes to Django (the catch-all Channels recommends).
        "http": URLRouter([*http_routes, re_path(r"", django_asgi_app)]),
        "websocket": AllowedHostsOrNoOriginValidator(URLRouter(websocket_routes)),
    }
)

embedded_workers_start()

# Everything loaded so far (Django, the apps, the URLconf and every view it imports) lives as
# long as the process. Moved out of the collector's reach, it is no longer walked by each full
# collection, which with ~150,000 objects paused the whole server for 70-120 ms under load
# (figure 1's p99 in docs/performance.md, round 4).
get_resolver().url_patterns  # noqa: B018  import the views now, not on the first request
gc.collect()
gc.freeze()
