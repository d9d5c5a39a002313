"""The services the bench runs against, made fresh for every run and removed afterwards.

``Stack.prepare`` drops and recreates the bench database (its name must contain "bench"),
deletes the bench's Redis keys, runs the release step (``migrate``, ``collectstatic``), creates
the bench user's API key with ``create_api_key`` and sets Django up in this process against the
same database and Redis, so a figure can play the worker (``job_change``) or submit batches.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import redis

from bench.harness import (
    BIN,
    DEFAULT_DATABASE_URL,
    DEFAULT_REDIS_URL,
    REDIS_PREFIX,
    Daphne,
    Proc,
    Procs,
    bench_env,
    manage,
)
from bench.images import multipart

BENCH_USER = "bench"


def _conninfo(database_url: str) -> dict[str, Any]:
    return psycopg.conninfo.conninfo_to_dict(
        database_url.replace("postgres://", "postgresql://", 1)
    )


@dataclass
class Stack:
    tmp: Path
    env: dict[str, str]
    procs: Procs
    database_url: str
    redis_url: str
    keep_tmp: bool = False
    api_key: str = ""
    _web: Daphne | None = None
    notes: list[str] = field(default_factory=list)

    @classmethod
    def create(cls) -> Stack:
        database_url = os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL
        redis_url = os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL
        tmp = Path(tempfile.mkdtemp(prefix="image2model-bench-"))
        (tmp / "logs").mkdir()
        env = bench_env(
            data_dir=tmp / "data",
            database_url=database_url,
            redis_url=redis_url,
            secret_key=secrets.token_urlsafe(50),
        )
        return cls(tmp, env, Procs(tmp / "logs"), database_url, redis_url)

    # --- setup -----------------------------------------------------------------------------

    def prepare(self) -> None:
        self._check_services()
        self._recreate_database()
        self.redis_clear()
        (self.tmp / "data").mkdir(exist_ok=True)
        manage(self.env, "migrate", "--noinput")
        manage(self.env, "collectstatic", "--noinput")
        self.api_key = manage(
            self.env, "create_api_key", "--user", BENCH_USER, "--name", "bench", "--create-user"
        ).strip()
        self._django_setup()
        with psycopg.connect(**_conninfo(self.database_url), autocommit=True) as db:
            db.execute(
                "CREATE TABLE bench_tick (id bigserial PRIMARY KEY, n integer NOT NULL,"
                " created_at timestamptz NOT NULL DEFAULT now())"
            )

    def _check_services(self) -> None:
        info = _conninfo(self.database_url)
        try:
            psycopg.connect(**{**info, "dbname": "postgres"}, connect_timeout=3).close()
        except Exception as error:
            raise RuntimeError(
                f"PostgreSQL is not reachable at {self.database_url}: {error}"
            ) from error
        try:
            redis.Redis.from_url(self.redis_url, socket_connect_timeout=2).ping()
        except Exception as error:
            raise RuntimeError(f"Redis is not reachable at {self.redis_url}: {error}") from error

    def _recreate_database(self) -> None:
        info = _conninfo(self.database_url)
        name = info.get("dbname", "")
        if "bench" not in name:
            raise RuntimeError(
                f"Refusing to drop database {name!r}: the bench database's name must contain "
                "'bench' (it is dropped and created again on every run)."
            )
        with psycopg.connect(**{**info, "dbname": "postgres"}, autocommit=True) as db:
            db.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            db.execute(f'CREATE DATABASE "{name}"')

    def _django_setup(self) -> None:
        os.environ.update(self.env)
        os.environ["LOG_LEVEL"] = "WARNING"  # the bench process's own logging stays quiet
        os.environ["DJANGO_SETTINGS_MODULE"] = "image2model.settings"
        import django

        django.setup()

    def redis_clear(self) -> int:
        client = redis.Redis.from_url(self.redis_url)
        removed = 0
        batch: list[bytes] = []
        for key in client.scan_iter(match=f"{REDIS_PREFIX}*", count=1000):
            batch.append(key)
            if len(batch) >= 500:
                removed += int(client.delete(*batch))
                batch = []
        if batch:
            removed += int(client.delete(*batch))
        return removed

    # --- processes -------------------------------------------------------------------------

    def daphne(
        self,
        name: str,
        app: str = "image2model.asgi:application",
        *,
        extra_env: dict[str, str] | None = None,
        raise_nofile: bool = False,
    ) -> Daphne:
        env = {**self.env, **(extra_env or {})}
        return Daphne(self.procs, name, env, app, raise_nofile=raise_nofile)

    def web(self) -> Daphne:
        """The shared image2model web process (started on first use)."""
        if self._web is None or not self._web.proc.alive():
            self._web = self.daphne("web")
        return self._web

    def _worker_ids(self) -> set[str]:
        from apps.jobs.models import WorkerHeartbeat

        return set(WorkerHeartbeat.objects.values_list("worker_id", flat=True))

    def _wait_for_worker(self, proc: Proc, before: set[str], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not proc.alive():
                raise RuntimeError(f"{proc.name} exited:\n{proc.log_tail()}")
            if self._worker_ids() - before:
                return
            time.sleep(0.1)
        raise RuntimeError(f"{proc.name} did not start:\n{proc.log_tail()}")

    def instant_worker(self, threads: int) -> Proc:
        before = self._worker_ids()
        argv = [str(BIN / "python"), "-m", "bench.instant_worker", "--threads", str(threads)]
        proc = self.procs.start("instant-worker", argv, self.env)
        self._wait_for_worker(proc, before)
        return proc

    def real_worker(self, processes: int = 1, threads: int = 2) -> Proc:
        """The Procfile's worker (``manage.py rundramatiq``), running the real generators."""
        before = self._worker_ids()
        argv = [
            str(BIN / "python"),
            "manage.py",
            "rundramatiq",
            "--processes",
            str(processes),
            "--threads",
            str(threads),
        ]
        proc = self.procs.start("worker", argv, self.env)
        self._wait_for_worker(proc, before)
        return proc

    def broker_flush(self) -> None:
        import dramatiq

        dramatiq.get_broker().flush_all()

    # --- API helpers -----------------------------------------------------------------------

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    def upload(self, server: Daphne, files: list[tuple[str, bytes]]) -> dict[str, Any]:
        return v1_upload(server.url, self.auth, files)

    def owner(self) -> Any:
        from django.contrib.auth import get_user_model

        return get_user_model().objects.get(username=BENCH_USER)

    # --- teardown --------------------------------------------------------------------------

    def close(self, *, failed: bool) -> None:
        self.procs.stop_all()
        with contextlib.suppress(Exception):
            from django.db import connections

            connections.close_all()
        with contextlib.suppress(Exception):
            self.redis_clear()
        if failed or self.keep_tmp:
            print(f"bench: logs and data kept in {self.tmp}")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)


def v1_upload(base_url: str, auth: dict[str, str], files: list[tuple[str, bytes]]) -> dict:
    """``POST /api/v1/upload/`` of ``files`` to a service that keeps the v1 contract."""
    body, content_type = multipart(files)
    response = httpx.post(
        f"{base_url}/api/v1/upload/",
        content=body,
        headers={**auth, "Content-Type": content_type},
        timeout=300,
    )
    if response.status_code != 200:
        raise RuntimeError(f"upload answered {response.status_code}: {response.text[:500]}")
    return dict(response.json())


def dump_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
