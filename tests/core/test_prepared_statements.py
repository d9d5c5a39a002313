"""PostgreSQL statements are bound on the server and prepared once a connection repeats them."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.db import connection

from tests.servers import python_c

pytestmark = pytest.mark.django_db


def prepared() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        return [row[0] for row in cursor.fetchall()]


def test_a_repeated_query_is_prepared_on_its_connection():
    users = get_user_model().objects
    connection.ensure_connection()
    for _ in range(4):
        list(users.filter(username="nobody"))
    assert not any('"auth_user"."username" = $1' in s for s in prepared())
    for _ in range(2):
        list(users.filter(username="nobody"))
    assert any('"auth_user"."username" = $1' in s for s in prepared())


def test_prepared_statements_can_be_turned_off():
    shown = python_c(
        "import django; django.setup(); from django.conf import settings; "
        "o = settings.DATABASES['default']['OPTIONS']; "
        "print(o.get('server_side_binding'), o.get('prepare_threshold'))",
        env={"DATABASE_PREPARED_STATEMENTS": "false"},
    )
    assert shown.split() == ["None", "None"]
