"""Say clearly whether PostgreSQL and Redis answer, before the test suite needs them."""

from __future__ import annotations

import os
import sys

import psycopg
import redis


def main() -> int:
    database_url = os.environ["DATABASE_URL"]
    redis_url = os.environ["REDIS_URL"]
    problems = []
    try:
        # The suite creates its own test database; the server only has to accept us.
        conninfo = psycopg.conninfo.conninfo_to_dict(
            database_url.replace("postgres://", "postgresql://", 1)
        )
        conninfo["dbname"] = "postgres"
        psycopg.connect(**conninfo, connect_timeout=3).close()
    except Exception as error:  # any failure means "not reachable" here
        problems.append(f"PostgreSQL is not reachable at {database_url}: {error}".strip())
    try:
        redis.Redis.from_url(redis_url, socket_connect_timeout=2).ping()
    except Exception as error:
        problems.append(f"Redis is not reachable at {redis_url}: {error}")
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if problems:
        print(
            "The test suite needs a running PostgreSQL and Redis (README, 'Running the tests'). "
            "Start them, or point TEST_DATABASE_URL / TEST_REDIS_URL at running ones.",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
