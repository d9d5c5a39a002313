"""timestamptz values read with psycopg's compiled loader equal what Django's loader gives."""

from __future__ import annotations

import datetime

import psycopg
import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.db.backends.postgresql.base import TIMESTAMPTZ_OID
from django.db.backends.postgresql.psycopg_any import get_adapters_template
from psycopg.pq import Format

from apps.core.db.postgresql.base import utc_adapters

pytestmark = pytest.mark.django_db

STAMPS = [
    "2026-11-25 23:16:42.360830+00",
    "2020-01-01 12:00:00.123456+05",
    "2024-03-31 01:59:59.999999+01",  # around a summer-time change elsewhere
    "1999-12-31 23:59:59-08",
    "0001-01-01 00:00:00+00",
    "9999-12-31 23:59:59.999999+00",
    "1970-01-01 00:00:00.000001+00",
]
QUERY = "SELECT " + ", ".join(f"'{stamp}'::timestamptz" for stamp in STAMPS)


def test_django_connections_use_psycopgs_compiled_loader():
    connection.ensure_connection()
    loader = connection.connection.adapters.get_loader(TIMESTAMPTZ_OID, Format.TEXT)
    assert loader is utc_adapters().get_loader(TIMESTAMPTZ_OID, Format.TEXT)
    assert not hasattr(loader, "timezone")  # not Django's Python subclass
    assert type(loader).__module__ != "django.db.backends.postgresql.psycopg_any"


def test_values_equal_djangos_loader_with_utc_on_them():
    with connection.cursor() as cursor:
        cursor.execute(QUERY)
        ours = cursor.fetchone()
    params = connection.get_connection_params()
    params.pop("context")
    django_context = get_adapters_template(True, datetime.UTC)
    with psycopg.connect(**params, context=django_context, options="-c TimeZone=UTC") as other:
        theirs = other.execute(QUERY).fetchone()
    assert ours == theirs
    assert [value.isoformat() for value in ours] == [value.isoformat() for value in theirs]
    assert all(value.tzinfo is datetime.UTC for value in ours)


def test_named_cursors_still_work():
    get_user_model().objects.create_user("a"), get_user_model().objects.create_user("b")
    joined = [user.date_joined for user in get_user_model().objects.iterator(chunk_size=1)]
    assert len(joined) == 2 and all(value.tzinfo is datetime.UTC for value in joined)


def test_a_zone_changed_after_connecting_is_still_applied(settings):
    connection.ensure_connection()
    settings.USE_TZ = False  # Django resets the connection's zone; the connection stays open
    with connection.cursor() as cursor:
        cursor.execute("SELECT '2020-01-01 12:00:00+05'::timestamptz")
        (value,) = cursor.fetchone()
    assert value.tzinfo is None and value == datetime.datetime(2020, 1, 1, 7, 0)
