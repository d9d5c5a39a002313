"""Start the service the way the README does, in subprocesses on free ports, for tests."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def embedded_env(data_dir: Path) -> dict[str, str]:
    """The environment of `make run`: no REDIS_URL, no DATABASE_URL."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS", "DATABASE", "DJANGO"))}
    env.update({"DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1"})
    env.pop("BROKER_REDIS_URL", None)
    env.pop("CACHE_REDIS_URL", None)
    env.pop("CHANNELS_REDIS_URL", None)
    return env


def python_c(code: str, env: dict[str, str], drop: tuple[str, ...] = ()) -> str:
    """What ``python -c code`` prints, run from the project root with Django's settings
    module and ``env`` on top of this process's environment less ``drop`` (it must succeed)."""
    inherited = {k: v for k, v in os.environ.items() if k not in drop}
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**inherited, "DJANGO_SETTINGS_MODULE": "image2model.settings", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "python"), "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


class Server:
    """A daphne process serving image2model.asgi on a free port."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(log_path, "wb")  # noqa: SIM115  closed in stop()
        self.process = subprocess.Popen(
            [
                str(BIN / "daphne"),
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "image2model.asgi:application",
            ],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self._wait_until_up(log_path)

    def _wait_until_up(self, log_path: Path, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited:\n{log_path.read_text()}")
            try:
                httpx.get(f"{self.url}/health", timeout=1)
                return
            except httpx.TransportError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"server did not start:\n{log_path.read_text()}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


def process_database_url(name: str | None = None) -> str:
    """The URL of the test database (or another database on the same server), for processes
    started by a test: they must see the rows the test committed."""
    from django.db import connection

    database = connection.settings_dict
    host, port = database["HOST"] or "localhost", database["PORT"] or 5432
    return f"postgres://{database['USER']}@{host}:{port}/{name or database['NAME']}"


def start_worker(env, log_path, processes: int = 1) -> subprocess.Popen:
    log = open(log_path, "ab")  # noqa: SIM115  handed to the child process
    return subprocess.Popen(
        [
            str(BIN / "python"),
            "manage.py",
            "rundramatiq",
            "--processes",
            str(processes),
            "--threads",
            "1",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def kill_group(process: subprocess.Popen, sig=signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)
    process.wait(timeout=30)


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def worker_env(fal_base: str, media_root) -> dict[str, str]:
    """The environment of a `rundramatiq` started by a test: the test database, a fake FAL
    server, and short heartbeats so a dead worker is noticed in seconds."""
    env = dict(os.environ)
    env.update(
        {
            "DATABASE_URL": process_database_url(),
            "MEDIA_ROOT": str(media_root),
            "FAL_KEY": "test-key",
            "FAL_BASE_URL_OVERRIDE": fal_base,
            "FAL_POLL_INTERVAL_SECONDS": "0.1",
            "FAL_HTTP_TIMEOUT_SECONDS": "2",
            "JOB_HEARTBEAT_SECONDS": "1",
            "JOB_STALE_AFTER_SECONDS": "3",
            # Dead workers are noticed fast: short broker heartbeat, maintenance on every command.
            "WORKER_HEARTBEAT_TIMEOUT_MS": "2000",
            "BROKER_MAINTENANCE_CHANCE": "1000000",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def services_env(media: Path, **extra: str) -> dict[str, str]:
    """The environment of a daphne process started by a test in services mode: the test
    database (whose rows the test commits), the test Redis prefix, its own media folder."""
    env = dict(os.environ)
    env.update(
        {
            "DJANGO_ENV": "test",
            "DATABASE_URL": process_database_url(),
            "MEDIA_ROOT": str(media),
            "PYTHONUNBUFFERED": "1",
            **extra,
        }
    )
    return env
