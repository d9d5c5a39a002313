"""Shared fixtures: a fixed cast (alice owns things, bob must not see them), API keys, media
storage per test, and the real Dramatiq broker (Redis) with a real worker."""

from __future__ import annotations

import io
from pathlib import Path

import dramatiq
import pytest
from django.test import Client

from apps.accounts.services import api_key_create
from apps.jobs import events, status_cache

DATA = Path(__file__).parent / "data"


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path):
    """Every test stores files in its own folder, so counting files is exact."""
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.MEDIA_ROOT.mkdir()
    return settings.MEDIA_ROOT


@pytest.fixture(autouse=True)
def verify_job_update_sql(monkeypatch):
    """Every job change in the suite is also compiled by the ORM and checked against the SQL
    kept for its shape (decision 0021): a difference fails the test that made the change."""
    monkeypatch.setattr(events, "VERIFY_UPDATE_SQL", True)


@pytest.fixture(autouse=True)
def verify_status_cache(monkeypatch):
    """Every batch status served from memory in the suite is also read from the database and
    compared (decision 0025): a write that forgot to bump the status fails its test."""
    monkeypatch.setattr(status_cache, "VERIFY", True)
    status_cache.forget_all()


@pytest.fixture
def alice(django_user_model):
    return django_user_model.objects.create_user(username="alice", password="alice-password-1")


@pytest.fixture
def bob(django_user_model):
    return django_user_model.objects.create_user(username="bob", password="bob-password-1")


@pytest.fixture
def staff(django_user_model):
    return django_user_model.objects.create_user(
        username="staff", password="staff-password-1", is_staff=True, is_superuser=True
    )


@pytest.fixture
def alice_key(alice) -> str:
    return api_key_create(owner=alice, name="alice's key")[1]


@pytest.fixture
def bob_key(bob) -> str:
    return api_key_create(owner=bob, name="bob's key")[1]


@pytest.fixture
def alice_api(alice_key) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Bearer {alice_key}")


@pytest.fixture
def bob_api(bob_key) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Bearer {bob_key}")


def sample(name: str) -> io.BytesIO:
    """A sample photo from tests/data as an upload-ready file object named ``name``."""
    stream = io.BytesIO((DATA / name).read_bytes())
    stream.name = name
    return stream


def named(data: bytes, name: str) -> io.BytesIO:
    stream = io.BytesIO(data)
    stream.name = name
    return stream


@pytest.fixture
def broker():
    """The real broker of the settings (Redis in the test run), emptied before and after."""
    broker = dramatiq.get_broker()
    broker.flush_all()
    yield broker
    broker.flush_all()


@pytest.fixture
def worker(broker):
    """A real Dramatiq worker consuming the broker in threads of this process."""
    from apps.jobs import actors  # noqa: F401  registers the actors on the broker

    worker = dramatiq.Worker(broker, worker_timeout=100, worker_threads=2)
    worker.start()
    yield worker
    worker.stop()


@pytest.fixture
def start_worker(broker, media_root):
    """Start a real worker (threads of this process) when the test says so, for example after
    its streams are open; stopped at the end of the test."""
    from apps.jobs import actors  # noqa: F401  registers the actors on the broker

    workers = []

    def start():
        worker = dramatiq.Worker(broker, worker_timeout=100, worker_threads=2)
        worker.start()
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop()


def wait_for_jobs(broker, worker, timeout_ms: int = 120_000) -> None:
    """Block until every message of the generation queue is processed."""
    broker.join("generation", timeout=timeout_ms)
    worker.join()
