"""Django's PostgreSQL backend, checking pooled connections without a round trip, and reading
``timestamptz`` columns with psycopg's own (compiled) loader when the zone is UTC.

Django builds its pool with psycopg's check, an empty query on every checkout: one more round
trip per request and per job step. This backend judges a connection by its state and by
whether the server sent anything unasked instead (decision 0019).

Django reads every ``timestamptz`` value through a Python subclass of psycopg's loader, to set
the connection's zone on it; the subclass keeps psycopg from using its compiled loader. With
the zone UTC (``USE_TZ`` on, the database's ``TIME_ZONE`` unset), psycopg's own loader
already gives datetimes in UTC (``datetime.timezone.utc``): the connection's session zone,
which Django sets to UTC on every new connection. So this backend uses psycopg's loader then
(decision 0023).
"""

from __future__ import annotations

import datetime
import functools
import select
from typing import Any

import psycopg
from django.conf import settings
from django.db.backends.postgresql.base import TIMESTAMPTZ_OID, ServerSideCursor
from django.db.backends.postgresql.base import DatabaseWrapper as PostgreSQLDatabaseWrapper
from django.db.backends.postgresql.psycopg_any import get_adapters_template, register_tzloader
from django.utils.asyncio import async_unsafe
from psycopg import adapt
from psycopg.pq import ConnStatus, Format, TransactionStatus
from psycopg.types.datetime import TimestamptzLoader


def is_open_and_idle(connection: psycopg.Connection) -> bool:
    """Whether a connection handed out idle can take a query, judged without a round trip.

    An idle connection has nothing to read unless the server sent something unasked: when it
    ends a session (restart, pg_terminate_backend, idle timeouts) that is a FATAL message and
    the end of the stream, which libpq only notices on its next read, so the status still
    says OK. The project never LISTENs, so any other unasked message (a rare ParameterStatus)
    costs only a reconnect.
    """
    pgconn = connection.pgconn
    if pgconn.status != ConnStatus.OK or pgconn.transaction_status != TransactionStatus.IDLE:
        return False
    try:
        fileno = pgconn.socket
    except psycopg.OperationalError:  # no socket any more
        return False
    return not _has_input(fileno)


def _has_input(fileno: int) -> bool:
    # poll() where there is one: select() refuses descriptors from FD_SETSIZE (1024) up, which a
    # web process holding many open streams can reach. A hang-up or an error counts as input.
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(fileno, select.POLLIN)
        return bool(poller.poll(0))
    readable, _, _ = select.select([fileno], [], [], 0)
    return bool(readable)


@functools.cache
def utc_adapters() -> adapt.AdaptersMap:
    """Django's adapters for a UTC connection, with psycopg's own ``timestamptz`` loader."""
    adapters = adapt.AdaptersMap(get_adapters_template(True, datetime.UTC))
    adapters.register_loader("timestamptz", TimestamptzLoader)  # psycopg picks its compiled one
    return adapters


class DatabaseWrapper(PostgreSQLDatabaseWrapper):
    """Takes pooled connections only if `is_open_and_idle`; without a pool, Django's own.
    Reads ``timestamptz`` with psycopg's loader when the connection's zone is UTC."""

    def get_connection_params(self) -> dict[str, Any]:
        params = super().get_connection_params()
        if settings.USE_TZ and self.timezone is datetime.UTC:
            params["context"] = utc_adapters()
        return params

    @async_unsafe
    def create_cursor(self, name=None):
        loader = self.connection.adapters.get_loader(TIMESTAMPTZ_OID, Format.TEXT)
        if hasattr(loader, "timezone"):  # Django's loader: Django's cursor
            return super().create_cursor(name)
        # Django's cursor. psycopg's loader has no zone to compare: it gives the connection's,
        # UTC. If Django's zone is no longer UTC (USE_TZ or TIME_ZONE changed since the
        # connection was made, as in tests), the cursor gets Django's loader, as Django does.
        if not name:
            cursor = self.connection.cursor()
        elif self.settings_dict["OPTIONS"].get("server_side_binding") is not True:
            cursor = ServerSideCursor(
                self.connection, name=name, scrollable=False, withhold=self.connection.autocommit
            )
        else:
            cursor = self.connection.cursor(
                name, scrollable=False, withhold=self.connection.autocommit
            )
        if self.timezone is not datetime.UTC:
            register_tzloader(self.timezone, cursor)
        return cursor

    @async_unsafe
    def get_new_connection(self, conn_params: dict[str, Any]) -> psycopg.Connection:
        pool = self.pool
        if not pool:
            return super().get_new_connection(conn_params)
        # After a restart every idle connection is stale: at most max_size of them, and then
        # a new one. More failures in a row mean the server closes even new connections.
        attempts = pool.max_size + 1
        for _ in range(attempts):
            connection = super().get_new_connection(conn_params)
            usable = False
            try:
                usable = is_open_and_idle(connection)
            finally:
                if not usable:
                    # The pool discards a closed connection handed back and opens a new one.
                    connection.close()
                    pool.putconn(connection)
            if usable:
                return connection
        raise psycopg.OperationalError(
            f"The connection pool handed out {attempts} connections in a row that could not "
            "take a query (closed by the database server, or inside a transaction); is the "
            "server restarting or ending sessions?"
        )
