"""Production settings refuse to start with an unsafe configuration."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.servers import ROOT, python_c

SAFE = {
    "DJANGO_ENV": "production",
    "SECRET_KEY": "x" * 50,
    "DEBUG": "false",
    "ALLOWED_HOSTS": "models.example.com",
}


def start_django(**overrides: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in SAFE}
    for name, value in {**SAFE, **overrides}.items():
        if value is not None:
            env[name] = value
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT,
        env={**env, "DJANGO_SETTINGS_MODULE": "image2model.settings"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_safe_production_configuration_starts():
    result = start_django()
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"SECRET_KEY": None}, "SECRET_KEY"),
        ({"SECRET_KEY": "short"}, "SECRET_KEY"),
        ({"DEBUG": "true"}, "DEBUG"),
        ({"ALLOWED_HOSTS": None}, "ALLOWED_HOSTS"),
        ({"ALLOWED_HOSTS": "*"}, "ALLOWED_HOSTS"),
    ],
)
def test_production_refuses_an_unsafe_configuration(overrides, named):
    result = start_django(**overrides)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert named in result.stderr.strip().splitlines()[-1]


def test_an_unknown_environment_name_is_refused():
    result = start_django(DJANGO_ENV="prod")
    assert result.returncode != 0
    assert "DJANGO_ENV" in result.stderr


def test_rundramatiq_workers_poll_an_idle_queue_every_100_ms():
    """rundramatiq execs the dramatiq CLI, whose worker processes take the idle poll interval
    from their environment; Dramatiq's own default (1 s) delayed the first job after a pause."""
    shown = python_c(
        "import sys; sys.argv = ['manage.py', 'rundramatiq']; import django; django.setup(); "
        "import dramatiq.worker; print(dramatiq.worker.WORKER_TIMEOUT)",
        env={"WORKER_METRICS_PORT": "0"},
        drop=("dramatiq_worker_timeout", "WORKER_IDLE_POLL_MS"),
    )
    assert shown.split() == ["100"]
