"""Fixtures of the client's tests: live daphne servers in services mode on the test database,
a real Dramatiq worker, and users with API keys (the suite's own fixtures from tests/)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import (  # noqa: F401  the suite's fixtures
    alice,
    alice_key,
    bob,
    bob_key,
    broker,
    start_worker,
)
from tests.servers import Server, services_env

DATA = Path(__file__).resolve().parents[3] / "tests" / "data"


def photo(name: str) -> Path:
    return DATA / name


def live_env(media: Path, **extra: str) -> dict[str, str]:
    return services_env(media, SSE_HEARTBEAT_SECONDS="1", STREAM_POLL_SECONDS="0.2", **extra)


@pytest.fixture(scope="session")
def server_media(tmp_path_factory):
    return tmp_path_factory.mktemp("client-media")


@pytest.fixture(scope="session")
def server(django_db_setup, django_db_blocker, server_media, tmp_path_factory):
    """A daphne process serving the app, as in production (services mode)."""
    logs = tmp_path_factory.mktemp("client-logs")
    with django_db_blocker.unblock():
        env = live_env(server_media)
    started = Server(env, logs / "server.log")
    yield started
    started.stop()


@pytest.fixture(scope="session")
def limited_server(django_db_setup, django_db_blocker, server_media, tmp_path_factory):
    """A second server whose keys may read twice in a five-second window."""
    logs = tmp_path_factory.mktemp("client-limited-logs")
    with django_db_blocker.unblock():
        env = live_env(server_media, RATE_LIMIT_READS="2/5s")
    started = Server(env, logs / "server.log")
    yield started
    started.stop()


@pytest.fixture
def media_root(settings, server_media):
    """The in-process worker writes where the servers read."""
    settings.MEDIA_ROOT = server_media
    return server_media


@pytest.fixture
def client(server, alice_key):  # noqa: F811
    from image2model_client import Client

    with Client(server.url, alice_key) as live:
        yield live


def cli_command() -> list[str]:
    """The installed ``image2model`` script beside this Python, else ``python -m``."""
    script = shutil.which("image2model", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "image2model_client"]


@pytest.fixture
def cli(server, alice_key, tmp_path):  # noqa: F811
    """Run the CLI as a user would: a subprocess with the URL and key in the environment."""

    def run(*args: str, env: dict[str, str] | None = None, timeout: float = 180):
        base = {k: v for k, v in os.environ.items() if not k.startswith("IMAGE2MODEL_")}
        base.update({"IMAGE2MODEL_URL": server.url, "IMAGE2MODEL_API_KEY": alice_key})
        if env is not None:
            base.update(env)
            base = {k: v for k, v in base.items() if v is not None}
        return subprocess.run(
            [*cli_command(), *args],
            cwd=tmp_path,
            env=base,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    return run
