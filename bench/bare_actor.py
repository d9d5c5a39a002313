"""The pipeline figure's baseline: a bare Dramatiq actor that writes one row and nothing else.

It runs in the same worker process as the real actor (bench/instant_worker.py), on the same
broker, with the same middleware (so it also opens and closes its database connection per
message, as the real jobs do). The table ``bench_tick`` is created by bench/run.py with plain
SQL; it belongs to the bench database only. Import this after ``django.setup()``.
"""

from __future__ import annotations

import dramatiq
from django.db import connection

BENCH_QUEUE = "bench"


@dramatiq.actor(queue_name=BENCH_QUEUE, max_retries=0, time_limit=60_000)
def bench_tick(n: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute("INSERT INTO bench_tick (n) VALUES (%s)", [n])
