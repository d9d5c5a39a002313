"""Recording job changes as JobEvents, and pushing them to the channel layer after commit.

Every change of a job's state goes through :func:`job_change`: the row update and its event are
written in one transaction, so the event log and the row never disagree. The push to the
channel layer is only a wake-up for live streams; streams read the events from the table.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Callable
from typing import Any

from channels.layers import get_channel_layer
from django.db import connections, models, transaction
from django.db.models import F, Q, Value
from django.db.models.expressions import CombinedExpression
from django.db.models.sql import UpdateQuery
from django.utils import timezone

from apps.core import rows as rows_sql
from apps.jobs import status_cache
from apps.jobs.models import Job, JobEvent
from apps.uploads.services import batch_event_seq_next

logger = logging.getLogger("image2model.jobs")

EVENT_MESSAGE_TYPE = "job.event"


def job_group(job_id) -> str:
    return f"job-{_hex(job_id)}"


def batch_group(batch_id) -> str:
    return f"batch-{_hex(batch_id)}"


def _hex(value) -> str:
    return value.hex if hasattr(value, "hex") else str(value).replace("-", "")


def job_snapshot(job: Job, *, filename: str | None = None, output_stem: str | None = None):
    """What a stream shows of one job at one moment.

    ``filename`` and ``output_stem`` (the source image's, which never change) may be given by a
    caller that has them without loading the source image.
    """
    if filename is None or output_stem is None:
        filename = job.source_image.original_filename
        output_stem = job.source_image.output_stem
    return {
        "job_id": str(job.id),
        "batch_id": str(job.batch_id),
        "file_id": str(job.source_image_id),
        "filename": filename,
        "output_stem": output_stem,
        "status": job.status,
        "stage": job.stage,
        "progress": job.progress,
        "queue_position": job.queue_position,
        "message": job.message,
        "error_code": job.error_code or None,
        "error": job.error_message or None,
        "attempts": job.attempts,
        "generator": job.generator,
        "updated_at": job.updated_at.isoformat(),
    }


def job_change(
    job_id,
    *,
    changes: dict[str, Any],
    event_type: str = "status",
    only_if: Q | None = None,
    with_change: Callable[[Job], None] | None = None,
) -> Job | None:
    """Apply ``changes`` to the job and append an event; None when ``only_if`` did not match.

    ``with_change(job)``, if given, runs in the same transaction once the change matched (for
    rows that must commit with it, such as a finished job's artifacts).

    The job row is locked first (by its update), then the batch row (for the batch's event
    sequence), and the batch lock is taken last so that it is held for as little as possible:
    every event of a batch waits for it. No writer holds a batch lock while it waits for an
    existing job's row (``job_events_record_created`` locks only jobs not yet committed), so
    concurrent writers of one batch cannot deadlock.

    Round trips: the update returns the changed row (``UPDATE … RETURNING``), and on
    PostgreSQL the batch's next number and the event's insert are one statement, so a change
    costs four (begin, update, insert, commit).
    """
    with transaction.atomic():
        changed = _job_update_returning(
            job_id,
            only_if,
            {**changes, "event_seq": F("event_seq") + 1, "updated_at": timezone.now()},
        )
        if changed is None:
            transaction.set_rollback(True)
            return None
        job, filename, output_stem = changed
        if with_change is not None:
            with_change(job)
        status_cache.version_bump(job.batch_id)
        event = _event_append(
            job,
            event_type=event_type,
            payload=job_snapshot(job, filename=filename, output_stem=output_stem),
        )
        transaction.on_commit(lambda: event_push(event))
    return job


# The uploads app's models, reached through the relations (its models module is private).
Batch = Job._meta.get_field("batch").related_model
SourceImage = Job._meta.get_field("source_image").related_model


def _job_update_returning(
    job_id, only_if: Q | None, values: dict[str, Any]
) -> tuple[Job, str, str] | None:
    """``Job.objects.filter(pk=job_id).filter(only_if).update(**values)``, returning the updated
    job (as a read would give it) with its source image's file name and output stem; None if
    no row matched.

    The ORM compiles the update as ``QuerySet.update`` does; ``RETURNING`` replaces the read
    that followed it. On PostgreSQL the statement also returns the source image, which the
    returned job carries (as ``select_related`` would); elsewhere (SQLite) it is read when
    first used.

    Compiling costs more than running the statement (a third of a job's time in the worker),
    and every job makes the same few changes: the SQL is kept per shape of the change (which
    columns, which kind of value, which conditions) and only the parameters are made again
    (:func:`_update_params`). The first statement of each shape is compiled by the ORM and its
    parameters compared with ours; a shape where they differ is never kept (decision 0021).
    """
    connection = connections[Job.objects.db]
    shape = _update_shape(values, only_if, connection)
    sql = _update_sql.get(shape) if shape is not None else None
    if sql is not None and not VERIFY_UPDATE_SQL:
        params = _update_params(job_id, values, only_if, connection)
    else:
        rows = Job.objects.filter(pk=job_id)
        if only_if is not None:
            rows = rows.filter(only_if)
        sql, params = _update_compiled(rows, values, connection)
        if shape is not None and (_update_sql.get(shape, "") is not None or VERIFY_UPDATE_SQL):
            _update_sql_keep(
                shape, sql, params, _update_params(job_id, values, only_if, connection)
            )
    with (
        transaction.mark_for_rollback_on_error(using=connection.alias),
        connection.cursor() as cursor,
    ):
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return None
    count = rows_sql.width(Job)
    job = rows_sql.instance(Job, row, connection)
    if connection.vendor != "postgresql":
        return job, row[count], row[count + 1]
    image = rows_sql.instance(SourceImage, row, connection, offset=count)
    Job.source_image.field.set_cached_value(job, image)
    return job, image.original_filename, image.output_stem


def _update_compiled(rows, values: dict[str, Any], connection) -> tuple[str, list]:
    """The ORM's SQL and parameters for the update with ``RETURNING`` (see above)."""
    query = rows.query.chain(UpdateQuery)
    query.add_update_values(values)
    query.clear_select_clause()
    sql, params = query.get_compiler(rows.db).as_sql()
    qn = connection.ops.quote_name
    table = qn(Job._meta.db_table)
    images = qn(SourceImage._meta.db_table)
    returning = rows_sql.columns(Job, Job._meta.db_table, connection)
    if connection.vendor == "postgresql":
        image_columns = rows_sql.columns(SourceImage, SourceImage._meta.db_table, connection)
        sql = (
            f"WITH changed AS ({sql} RETURNING {returning}) "  # noqa: S608  names from the models
            f"SELECT changed.*, {image_columns} "
            f"FROM changed JOIN {images} ON {images}.{qn('id')} = changed.{qn('source_image_id')}"
        )
    else:
        image_of_job = f"{images}.{qn('id')} = {table}.{qn('source_image_id')}"
        sql = (
            f"{sql} RETURNING {returning}, "  # noqa: S608  names from the models
            f"(SELECT {qn('original_filename')} FROM {images} WHERE {image_of_job}), "
            f"(SELECT {qn('output_stem')} FROM {images} WHERE {image_of_job})"
        )
    return sql, list(params)


# Compiled update SQL by shape (see _job_update_returning). A shape maps to None once our
# parameters differed from the ORM's for it: such a change is always compiled by the ORM.
_update_sql: dict[tuple, str | None] = {}
_update_sql_lock = threading.Lock()
# Tests turn this on: every change is compiled by the ORM too and checked against the kept SQL.
VERIFY_UPDATE_SQL = False


def _update_sql_keep(shape: tuple, sql: str, orm_params: list, ours: list) -> None:
    same = _same_params(orm_params, ours)
    kept = _update_sql.get(shape, sql)
    if VERIFY_UPDATE_SQL and not (same and kept == sql):
        raise AssertionError(
            f"job update SQL of shape {shape}: kept {kept!r} with {ours!r}, "
            f"the ORM {sql!r} with {orm_params!r}"
        )
    with _update_sql_lock:
        if shape not in _update_sql:
            if not same:
                logger.warning("job update of shape %s is compiled every time", shape)
            _update_sql[shape] = sql if same else None


def _same_params(orm_params: list, ours: list) -> bool:
    if len(orm_params) != len(ours):
        return False
    return all(_param_key(a) == _param_key(b) for a, b in zip(orm_params, ours, strict=True))


def _param_key(value: Any) -> Any:
    # psycopg's Jsonb wraps a value (no equality of its own); compare what it wraps.
    return ("json", repr(value.obj)) if hasattr(value, "obj") else (type(value), value)


def _update_shape(values: dict[str, Any], only_if: Q | None, connection) -> tuple | None:
    """What the update's SQL depends on, or None if it has a part we do not rebuild (then the
    ORM compiles it, as it always did)."""
    try:
        return _update_shape_of(values, only_if, connection)
    except Exception:  # anything unexpected in a change: the ORM decides, as before
        return None


def _update_shape_of(values: dict[str, Any], only_if: Q | None, connection) -> tuple | None:
    parts: list[Any] = [connection.vendor, connection.alias]
    for name, value in values.items():
        if isinstance(value, F):
            parts.append((name, "F", value.name))
        elif isinstance(value, CombinedExpression):
            lhs, rhs = value.lhs, value.rhs
            if not (isinstance(lhs, F) and isinstance(rhs, Value)) or rhs.value is None:
                return None
            parts.append((name, "F+", lhs.name, value.connector, type(rhs.value)))
        elif hasattr(value, "resolve_expression") or isinstance(value, models.Model):
            return None
        else:
            parts.append((name, _value_kind(value)))
    if only_if is not None:
        condition = _q_shape(only_if, connection)
        if condition is None:
            return None
        parts.append(condition)
    shape = tuple(parts)
    hash(shape)  # an unhashable value (a dict in an __in) raises: the ORM compiles it
    return shape


def _value_kind(value: Any) -> Any:
    # None and booleans change the SQL itself ("= NULL", "IS NULL", "NOT col"): kept as values.
    if value is None or isinstance(value, bool):
        return ("is", value)
    return type(value)


_LOOKUPS = {"exact", "in", "lt", "lte", "gt", "gte"}


def _q_shape(q: Q, connection) -> tuple | None:
    children: list[Any] = []
    for child in q.children:
        if isinstance(child, Q):
            found = _q_shape(child, connection)
            if found is None:
                return None
            children.append(found)
            continue
        if not (isinstance(child, tuple) and len(child) == 2):
            return None  # an expression (Exists, …) as a condition
        lookup, value = child
        name, _, kind = lookup.partition("__")
        kind = kind or "exact"
        if kind not in _LOOKUPS:  # also lookups across relations ("batch__owner")
            return None
        if hasattr(value, "resolve_expression") or isinstance(value, models.Model):
            return None
        try:
            field = Job._meta.get_field(name)
        except Exception:
            return None
        if field.is_relation and not field.many_to_one:
            return None
        if kind == "in":
            if not isinstance(value, list | tuple):
                return None
            children.append((name, kind, tuple(value)))
            continue
        if isinstance(field, models.IntegerField) and not _plain_integer(field, value, connection):
            return None
        children.append((name, kind, _value_kind(value)))
    return (q.connector, q.negated, tuple(children))


def _plain_integer(field, value: Any, connection) -> bool:
    """Whether an integer column's lookup value gives the SQL every other such value gives.
    Django drops or empties a condition whose value is out of the column's range, and rounds
    a float up for lt/gte: such values are compiled by the ORM each time."""
    if value is None:
        return True
    if isinstance(value, bool) or not isinstance(value, int):
        return False
    low, high = connection.ops.integer_field_range(field.get_internal_type())
    return (low is None or value >= low) and (high is None or value <= high)


def _update_params(job_id, values: dict[str, Any], only_if: Q | None, connection) -> list:
    """The parameters of the kept SQL, in the order the ORM puts them."""
    params: list[Any] = []
    for name, value in values.items():
        if value is None or isinstance(value, F):
            continue
        if isinstance(value, CombinedExpression):  # F(name) + Value, compiled for a save
            rhs = value.rhs
            params.append(rhs.output_field.get_db_prep_save(rhs.value, connection=connection))
            continue
        params.append(Job._meta.get_field(name).get_db_prep_save(value, connection))
    params.append(_lookup_param(Job._meta.pk, job_id, connection))
    if only_if is not None:
        _q_params(only_if, params, connection)
    return params


def _q_params(q: Q, params: list, connection) -> None:
    for child in q.children:
        if isinstance(child, Q):
            _q_params(child, params, connection)
            continue
        lookup, value = child
        name, _, kind = lookup.partition("__")
        field = Job._meta.get_field(name)
        if field.is_relation:
            field = field.target_field
        if kind == "in":
            unique = [item for item in dict.fromkeys(value) if item is not None]
            params.extend(_lookup_param(field, item, connection) for item in unique)
        elif value is None or isinstance(value, bool):
            continue  # IS NULL / "col" / NOT "col": no parameter
        else:
            params.append(_lookup_param(field, value, connection))


def _lookup_param(field, value: Any, connection) -> Any:
    return field.get_db_prep_value(field.get_prep_value(value), connection, prepared=True)


def _event_append(job: Job, *, event_type: str, payload: dict[str, Any]) -> JobEvent:
    """Insert the job's next event, numbered in its batch's sequence (the batch lock, last)."""
    connection = connections[Job.objects.db]
    event = JobEvent(
        job=job,
        batch_id=job.batch_id,
        seq=job.event_seq,
        type=event_type,
        payload=payload,
        created_at=timezone.now(),
    )
    if connection.vendor != "postgresql":
        event.batch_seq = batch_event_seq_next(batch_id=job.batch_id)
        event.save(force_insert=True)
        return event
    # One statement: take the batch's next number (its row lock) and insert the event.
    qn = connection.ops.quote_name
    meta = JobEvent._meta
    columns = ["job_id", "batch_id", "seq", "type", "payload", "created_at"]
    params = [
        meta.get_field(name).get_db_prep_save(getattr(event, name), connection) for name in columns
    ]
    batch_id = Batch._meta.pk.get_db_prep_value(job.batch_id, connection)
    sql = (
        f"WITH next AS (UPDATE {qn(Batch._meta.db_table)} SET {qn('event_seq')} = "  # noqa: S608
        f"{qn('event_seq')} + 1 WHERE {qn('id')} = %s RETURNING {qn('event_seq')}) "
        f"INSERT INTO {qn(meta.db_table)} "
        f"({', '.join(qn(name) for name in columns)}, {qn('batch_seq')}) "
        f"SELECT {', '.join(['%s'] * len(columns))}, next.{qn('event_seq')} FROM next "
        f"RETURNING {qn('id')}, {qn('batch_seq')}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [batch_id, *params])
        row = cursor.fetchone()
    if row is None:
        raise Batch.DoesNotExist(f"batch {job.batch_id} does not exist")
    event.id, event.batch_seq = row
    event._state.adding = False
    event._state.db = connection.alias
    return event


def job_events_record_created(jobs: list[Job]) -> None:
    """The first event of freshly created jobs (inside the creating transaction).

    A batch's jobs take their sequence numbers in one statement, their events are inserted
    in one statement, and all of them are pushed together after the commit.
    """
    by_batch: dict[Any, list[Job]] = {}
    for job in jobs:
        by_batch.setdefault(job.batch_id, []).append(job)
    created: list[JobEvent] = []
    for batch_id, batch_jobs in by_batch.items():
        last = batch_event_seq_next(batch_id=batch_id, count=len(batch_jobs))
        first = last - len(batch_jobs) + 1
        Job.objects.filter(pk__in=[job.pk for job in batch_jobs]).update(event_seq=1)
        for offset, job in enumerate(batch_jobs):
            job.event_seq = 1
            created.append(
                JobEvent(
                    job=job,
                    batch_id=batch_id,
                    seq=1,
                    batch_seq=first + offset,
                    type="created",
                    payload=job_snapshot(job),
                )
            )
    JobEvent.objects.bulk_create(created)
    transaction.on_commit(lambda: events_push(created))


_serving_loop: asyncio.AbstractEventLoop | None = None


def serving_loop_register(loop: asyncio.AbstractEventLoop) -> None:
    """Remember the server's event loop (consumers call this when a stream opens).

    The in-memory channel layer of the embedded mode keeps asyncio queues bound to that loop;
    a worker thread must hand its group_send to that loop instead of running its own.
    """
    global _serving_loop
    _serving_loop = loop


def _in_memory_send(layer, sends: list[tuple[str, dict]]) -> bool:
    loop = _serving_loop
    if loop is None or loop.is_closed() or type(layer).__name__ != "InMemoryChannelLayer":
        return False

    async def send_all() -> None:
        for group, message in sends:
            await layer.group_send(group, message)

    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        loop.create_task(send_all())
    else:
        asyncio.run_coroutine_threadsafe(send_all(), loop).result(timeout=5)
    return True


def event_message(event: JobEvent) -> dict[str, Any]:
    """The group message of one event. It carries the event itself, so a stream that has read
    everything before it can send it without reading the log again; any other stream reads the
    log (the message is still only a wake-up for it)."""
    return {
        "type": EVENT_MESSAGE_TYPE,
        "job_id": str(event.job_id),
        "batch_id": str(event.batch_id),
        "seq": event.seq,
        "batch_seq": event.batch_seq,
        "payload": event.payload,
    }


class _PushLoop:
    """One event loop thread per process that sends the pushes of sync code, in order.

    ``async_to_sync`` made a new event loop for every call, and channels_redis keeps its Redis
    connections per loop: each push opened (and closed) two new Redis connections. On one
    long-lived loop the layer's connections are reused. The caller (a worker thread, just
    after its commit) does not wait for Redis: pushes are queued and sent one after another,
    so they leave in commit order. A push is a hint; if the process ends first, streams find
    the event in the log.
    """

    MAX_QUEUED = 10_000  # beyond this (Redis down for long), pushes are dropped, not hoarded
    MAX_SENDS_AT_ONCE = 200

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue | None = None
        self._drainer: asyncio.Task | None = None
        self._pid = 0

    def _start(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            self._queue = asyncio.Queue(maxsize=self.MAX_QUEUED)
            self._drainer = loop.create_task(self._drain(self._queue))
            loop.call_soon(ready.set)
            loop.run_forever()

        threading.Thread(target=run, name="event-push-loop", daemon=True).start()
        ready.wait(timeout=5)
        return loop

    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            # A forked child inherits the loop object but not its thread: start its own.
            if self._loop is None or self._pid != os.getpid() or self._loop.is_closed():
                self._loop, self._pid = self._start(), os.getpid()
            return self._loop

    def submit(self, layer, sends: list[tuple[str, dict]]) -> None:
        self.loop().call_soon_threadsafe(self._enqueue, layer, sends)

    def _enqueue(self, layer, sends: list[tuple[str, dict]]) -> None:
        try:
            self._queue.put_nowait((layer, sends))
        except asyncio.QueueFull:
            logger.warning("push queue full: %d push(es) dropped", len(sends))

    async def _drain(self, queue: asyncio.Queue) -> None:
        while True:
            layer, sends = await queue.get()
            sends = list(sends)
            # What else is queued for the same layer leaves with it, in order: one
            # group_send_many is two round trips however many messages it carries.
            while not queue.empty() and len(sends) < self.MAX_SENDS_AT_ONCE:
                next_layer, more = queue.get_nowait()
                if next_layer is not layer:
                    await self._send(layer, sends)
                    layer, sends = next_layer, []
                sends.extend(more)
            await self._send(layer, sends)

    @staticmethod
    async def _send(layer, sends: list[tuple[str, dict]]) -> None:
        try:
            if hasattr(layer, "group_send_many"):
                await layer.group_send_many(sends)
                return
            for group, message in sends:
                await layer.group_send(group, message)
        except Exception:  # a push is a hint: Redis trouble must never fail a job
            logger.warning("could not push %d message(s)", len(sends), exc_info=True)


_push_loop = _PushLoop()


def event_push(event: JobEvent) -> None:
    """Wake the streams of the event's job and batch. A lost push loses nothing."""
    events_push([event])


def events_push(events: list[JobEvent]) -> None:
    """Push events in their order (to each one's job group, then its batch group)."""
    try:
        layer = get_channel_layer()
        if layer is None or not events:
            return
        sends = [
            (group, event_message(event))
            for event in events
            for group in (job_group(event.job_id), batch_group(event.batch_id))
        ]
        if _in_memory_send(layer, sends):
            return
        _push_loop.submit(layer, sends)
    except Exception:  # a push is a hint: Redis trouble must never fail a job
        first = events[0]
        logger.warning(
            "could not push %d event(s) from %s of job %s",
            len(events),
            first.seq,
            first.job_id,
            exc_info=True,
        )
