"""A Dramatiq middleware that records, every few seconds, that this worker process is alive.

Health checks count the workers seen recently; with none, generation cannot happen.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid

from dramatiq.middleware import Middleware

logger = logging.getLogger("image2model.jobs")

BEAT_SECONDS = 10


class WorkerHeartbeatMiddleware(Middleware):
    def __init__(self) -> None:
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    def after_worker_boot(self, broker, worker) -> None:
        self.stop.clear()
        self.thread = threading.Thread(target=self._run, name="worker-heartbeat", daemon=True)
        self.thread.start()

    def before_worker_shutdown(self, broker, worker) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(timeout=5)
        self._forget()

    def _run(self) -> None:
        # Imported here: the broker (and this middleware) is built before Django's apps load.
        from django.conf import settings
        from django.db import connection
        from django.utils import timezone

        from apps.jobs.models import WorkerHeartbeat

        started = timezone.now()
        while True:
            try:
                WorkerHeartbeat.objects.update_or_create(
                    worker_id=self.worker_id,
                    defaults={
                        "hostname": socket.gethostname(),
                        "pid": os.getpid(),
                        "embedded": not settings.SERVICES_MODE,
                        "started_at": started,
                        "last_seen": timezone.now(),
                    },
                )
            except Exception:
                logger.warning("could not record worker heartbeat", exc_info=True)
                connection.close()
            if self.stop.wait(BEAT_SECONDS):
                break
        connection.close()

    def _forget(self) -> None:
        from django.db import connection

        from apps.jobs.models import WorkerHeartbeat

        try:
            WorkerHeartbeat.objects.filter(worker_id=self.worker_id).delete()
        except Exception:
            logger.warning("could not remove worker heartbeat", exc_info=True)
        finally:
            connection.close()
