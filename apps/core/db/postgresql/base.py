"""Django's PostgreSQL backend, checking pooled connections without a round trip.

Django builds its pool with psycopg's check, an empty query on every checkout: one more round
trip per request and per job step. This backend judges a connection by its state and by
whether the server sent anything unasked instead (decision 0019).
"""

from __future__ import annotations

import select
from typing import Any

import psycopg
from django.db.backends.postgresql.base import DatabaseWrapper as PostgreSQLDatabaseWrapper
from django.utils.asyncio import async_unsafe
from psycopg.pq import ConnStatus, TransactionStatus


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


class DatabaseWrapper(PostgreSQLDatabaseWrapper):
    """Takes pooled connections only if `is_open_and_idle`; without a pool, Django's own."""

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
