"""Log plumbing: JSON lines with request context, and a database handler that never blocks.

Nothing here is imported by the other apps: LOGGING (settings) names these classes by path.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import sys
import threading
import traceback
from datetime import UTC, datetime
from logging.handlers import QueueHandler

from pythonjsonlogger.json import JsonFormatter

CONTEXT_FIELDS = ("request_id", "route", "method", "status", "duration_ms", "user_id")


class JsonLineFormatter(JsonFormatter):
    """One JSON object per line: time, level, logger, message and the request's context."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("rename_fields", {"levelname": "level", "name": "logger"})
        kwargs.setdefault("timestamp", "time")
        super().__init__("%(levelname)s %(name)s %(message)s", *args, **kwargs)

    def add_fields(self, log_data, record, message_dict):
        super().add_fields(log_data, record, message_dict)
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value not in (None, "", "-"):
                log_data[name] = value


class DatabaseHandler(QueueHandler):
    """Stores WARNING and above in the database from a background thread.

    Emitting only puts the record on an in-memory queue, so a slow or failing database never
    delays or breaks a request (or an async consumer, where the ORM may not be called). The
    writer thread uses its own connection, so stored records survive a request's rollback.
    """

    def __init__(self, level=logging.WARNING, capacity: int = 10_000):
        self.records: queue.Queue = queue.Queue(maxsize=capacity)
        super().__init__(self.records)
        self.setLevel(level)
        self._writer: threading.Thread | None = None
        self._lock = threading.Lock()

    def enqueue(self, record: logging.LogRecord) -> None:
        self._start_writer()
        # Dropping a stored copy beats blocking the caller; the log file still has the line.
        with contextlib.suppress(queue.Full):
            self.records.put_nowait(record)

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        record.stored_message = record.getMessage()
        record.stored_traceback = (
            "".join(traceback.format_exception(*record.exc_info)) if record.exc_info else ""
        )
        record.exc_info = None
        return record

    def _start_writer(self) -> None:
        if self._writer is not None and self._writer.is_alive():
            return
        with self._lock:
            if self._writer is None or not self._writer.is_alive():
                self._writer = threading.Thread(
                    target=self._write_forever, name="log-writer", daemon=True
                )
                self._writer.start()

    def _write_forever(self) -> None:
        while True:
            batch = [self.records.get()]
            while len(batch) < 100:
                try:
                    batch.append(self.records.get_nowait())
                except queue.Empty:
                    break
            self._write(batch)

    def _write(self, batch: list[logging.LogRecord]) -> None:
        try:
            from django.db import close_old_connections

            from apps.logs.models import LogRecord

            close_old_connections()
            LogRecord.objects.bulk_create([_row(LogRecord, record) for record in batch])
        except Exception as error:  # the database is down: the lines are still in the files
            # Not through logging: that would feed this handler its own failure.
            sys.stderr.write(f"log records not stored: {error!r}\n")


def _row(model, record: logging.LogRecord):
    return model(
        created_at=datetime.fromtimestamp(record.created, tz=UTC),
        level=record.levelname,
        logger=record.name[:100],
        message=getattr(record, "stored_message", record.getMessage())[:10_000],
        request_id=_context(record, "request_id")[:128],
        route=str(getattr(record, "route", "") or "")[:200],
        method=str(getattr(record, "method", "") or "")[:10],
        status=getattr(record, "status", None),
        user_id=str(getattr(record, "user_id", "") or "")[:64],
        traceback=getattr(record, "stored_traceback", ""),
    )


def _context(record: logging.LogRecord, name: str) -> str:
    value = getattr(record, name, "")
    return "" if value in (None, "-") else str(value)
