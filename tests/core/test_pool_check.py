"""Pooled connections are checked without a round trip, and ones the server ended are replaced
(decision 0019)."""

from __future__ import annotations

import select
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import psycopg
import pytest
from django.db import connection, connections
from psycopg import pq
from psycopg_pool import ConnectionPool

from apps.core.db.postgresql.base import is_open_and_idle
from tests.servers import python_c

pytestmark = pytest.mark.django_db(transaction=True)


def connect() -> psycopg.Connection:
    """A plain psycopg connection to the test database, outside Django and its pool."""
    params = connection.get_connection_params()
    return psycopg.connect(**params, autocommit=True)


@pytest.fixture
def admin():
    """A separate connection that ends other sessions, as a restart or an operator would."""
    with connect() as admin:
        yield admin


def terminate(admin: psycopg.Connection, pids: Iterable[int]) -> None:
    """End the sessions ``pids`` of the test database, waiting until their processes exit."""
    ended = admin.execute(
        "SELECT pid, pg_terminate_backend(pid, 5000) FROM pg_stat_activity"
        " WHERE datname = current_database() AND pid = ANY(%s) AND pid <> pg_backend_pid()",
        [list(pids)],
    ).fetchall()
    assert sorted(ended) == sorted((pid, True) for pid in pids)


def wait_until_readable(ended: Iterable[psycopg.Connection]) -> None:
    """The server's goodbye (FATAL, then the end of the stream) arrives just after the exit."""
    sockets = [conn.pgconn.socket for conn in ended]
    deadline = time.monotonic() + 5
    while set(select.select(sockets, [], [], 0.1)[0]) != set(sockets):
        assert time.monotonic() < deadline, "the ended sessions' sockets never became readable"


@pytest.fixture
def own():
    """Django's wrapper of the test database with a pool of its own (pools are per alias), so
    no other thread of the test run takes or hands back its connections while a test counts
    them."""
    default = connections["default"]
    wrapper = type(default)({**default.settings_dict}, alias="pool_check")
    assert wrapper.pool is not None and wrapper.pool is not default.pool
    yield wrapper
    wrapper.close()
    wrapper.close_pool()


def backend_pid(wrapper) -> int:
    """The server process behind the wrapper's connection, taken from the pool and handed back."""
    with wrapper.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    wrapper.close()
    return pid


def idle_connections(pool: ConnectionPool) -> list[psycopg.Connection]:
    """Every connection of ``pool``, all idle: taken out at once and handed back."""
    # A connection still being opened (the pool grows when a request waits) would join later.
    deadline = time.monotonic() + 5
    while (stats := pool.get_stats())["pool_available"] != stats["pool_size"]:
        assert time.monotonic() < deadline, f"the pool never settled: {stats}"
        time.sleep(0.01)
    taken = [pool.getconn() for _ in range(stats["pool_available"])]
    for conn in taken:
        pool.putconn(conn)
    return taken


@contextmanager
def wire_traces(traced: Iterable[psycopg.Connection], folder: Path) -> Iterator[list[Path]]:
    """Records libpq's trace of what ``traced`` send and receive inside the block."""
    traced = list(traced)
    paths = [folder / f"{n}.trace" for n in range(len(traced))]
    files = [path.open("wb") for path in paths]
    try:
        for conn, file in zip(traced, files, strict=True):
            conn.pgconn.trace(file.fileno())
            conn.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS)
        yield paths
    finally:
        for conn in traced:
            with suppress(psycopg.Error):
                conn.pgconn.untrace()  # flushes libpq's buffer before the file closes
        for file in files:
            file.close()


def round_trips(traces: Iterable[Path]) -> int:
    """Each exchange the server completes ends with one ReadyForQuery message."""
    lines = (line.split("\t") for path in traces for line in path.read_text().splitlines())
    return sum(fields[0] == "B" and fields[2] == "ReadyForQuery" for fields in lines)


def test_a_fresh_connection_passes_the_check():
    with connect() as conn:
        assert is_open_and_idle(conn)
        conn.execute("SELECT 1")
        assert is_open_and_idle(conn)


def test_a_connection_the_server_ended_fails_the_check(admin):
    with connect() as conn:
        terminate(admin, [conn.info.backend_pid])
        wait_until_readable([conn])
        # libpq has not read the goodbye yet: the status alone would still say usable.
        assert conn.pgconn.status == pq.ConnStatus.OK
        assert not is_open_and_idle(conn)


def test_a_connection_inside_a_transaction_fails_the_check():
    with connect() as conn:
        conn.execute("BEGIN")
        assert not is_open_and_idle(conn)
        conn.execute("ROLLBACK")
        assert is_open_and_idle(conn)


def test_django_replaces_the_pooled_connections_the_server_ended(admin, own):
    assert type(connections["default"]).__module__ == "apps.core.db.postgresql.base"
    old_pid = backend_pid(own)
    pooled = idle_connections(own.pool)
    pids = {conn.info.backend_pid for conn in pooled}
    assert old_pid in pids
    discarded_before = own.pool.get_stats().get("returns_bad", 0)

    terminate(admin, pids)
    wait_until_readable(pooled)

    new_pid = backend_pid(own)
    assert new_pid not in pids
    # Every ended connection was taken, found out and handed back to be discarded.
    discarded = own.pool.get_stats().get("returns_bad", 0) - discarded_before
    assert discarded == len(pids)


def test_a_healthy_checkout_costs_no_round_trip_before_the_query(tmp_path, own):
    assert type(connections["default"]).__module__ == "apps.core.db.postgresql.base"
    backend_pid(own)  # the pool is open and holds its connections
    with wire_traces(idle_connections(own.pool), tmp_path) as traces:
        with own.cursor() as cursor:
            cursor.execute("SELECT 1")
            assert cursor.fetchone() == (1,)
        own.close()
    assert round_trips(traces) == 1  # the query's own: psycopg's check would add an empty query


def test_without_the_pool_django_checks_persistent_connections():
    shown = python_c(
        "import django; django.setup(); from django.db import connections; "
        "c = connections['default']; "
        "print(c.settings_dict['CONN_HEALTH_CHECKS'], c.pool, type(c).__module__)",
        env={"DATABASE_POOL": "false"},
    )
    assert shown.split() == ["True", "None", "apps.core.db.postgresql.base"]


def test_without_the_pool_connections_are_opened_as_django_does():
    settings_dict = {**connections["default"].settings_dict}
    settings_dict["OPTIONS"] = {k: v for k, v in settings_dict["OPTIONS"].items() if k != "pool"}
    unpooled = type(connections["default"])(settings_dict, alias="unpooled")
    assert unpooled.pool is None
    try:
        with unpooled.cursor() as cursor:
            cursor.execute("SELECT 1")
            assert cursor.fetchone() == (1,)
    finally:
        unpooled.close()
    assert unpooled.connection is None
