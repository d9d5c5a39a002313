"""What every figure shares: the bench environment, the processes it starts, statistics, rows.

Processes are started the way the README starts them (daphne for web, Dramatiq for workers,
`manage.py` for the release steps) with the services-mode environment built here. Every child
is started through bench/launch.py, which sets PR_SET_PDEATHSIG, so even a killed bench run
leaves no server behind; ``Procs`` stops them in order on the way out.
"""

from __future__ import annotations

import contextlib
import os
import platform
import resource
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import numpy as np
import psutil

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

DEFAULT_DATABASE_URL = "postgres://postgres@localhost:5432/image2model_bench"
DEFAULT_REDIS_URL = "redis://localhost:6379/0"
REDIS_PREFIX = "image2model-bench"


# --- environment -------------------------------------------------------------------------------


def raise_nofile_limit() -> int:
    """Raise the soft open-files limit to the hard one (streams need a socket each)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 1_048_576
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def bench_env(
    *, data_dir: Path, database_url: str, redis_url: str, secret_key: str
) -> dict[str, str]:
    """Services mode with production settings, on the bench database and Redis prefix.

    Plain HTTP on 127.0.0.1 stands in for the TLS proxy, so the HTTPS redirect is off; the rate
    limits are raised so they never answer 429 in the middle of a measurement.
    """
    dropped = ("REDIS", "DATABASE", "DJANGO", "FAL_", "BROKER_", "CACHE_", "CHANNELS_", "STREAM")
    env = {k: v for k, v in os.environ.items() if not k.startswith(dropped)}
    for name in ("DEBUG", "SECRET_KEY", "ALLOWED_HOSTS", "DATA_DIR", "MEDIA_ROOT", "STATIC_ROOT"):
        env.pop(name, None)
    env.update(
        {
            "DJANGO_ENV": "production",
            "SECRET_KEY": secret_key,
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "SECURE_SSL_REDIRECT": "false",
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "REDIS_PREFIX": REDIS_PREFIX,
            "DATA_DIR": str(data_dir),
            "RATE_LIMIT_UPLOADS": "100000/m",
            "RATE_LIMIT_READS": "10000000/m",
            "RATE_LIMIT_ANONYMOUS": "10000000/m",
            "STREAM_POLL_SECONDS": "30",
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": str(ROOT),
        }
    )
    return env


def manage(env: dict[str, str], *args: str, timeout: float = 300) -> str:
    """Run ``manage.py`` like the README's release step; its stdout, or raise with stderr."""
    done = subprocess.run(
        launcher([str(BIN / "python"), "manage.py", *args]),
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{done.stderr[-4000:]}")
    return done.stdout


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- processes ---------------------------------------------------------------------------------


def launcher(argv: Sequence[str], *, raise_nofile: bool = False) -> list[str]:
    """``argv`` wrapped in bench/launch.py: it dies with the bench (PR_SET_PDEATHSIG)."""
    flags = ["--nofile"] if raise_nofile else []
    return [sys.executable, "-S", str(ROOT / "bench" / "launch.py"), *flags, *argv]


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    log: IO[bytes]

    @property
    def pid(self) -> int:
        return self.popen.pid

    def rss(self) -> int:
        return int(psutil.Process(self.pid).memory_info().rss)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""


class Procs:
    """Every process the bench starts; ``stop_all`` ends them, newest first."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.running: list[Proc] = []

    def start(
        self, name: str, argv: Sequence[str], env: dict[str, str], *, raise_nofile: bool = False
    ) -> Proc:
        log_path = self.log_dir / f"{name}-{len(self.running)}-{int(time.time() * 1000)}.log"
        log = open(log_path, "wb")  # noqa: SIM115  closed in stop()
        popen = subprocess.Popen(
            launcher(argv, raise_nofile=raise_nofile),
            cwd=ROOT,
            env={**env, "BENCH_PARENT_PID": str(os.getpid())},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        proc = Proc(name, popen, log_path, log)
        self.running.append(proc)
        return proc

    def stop(self, proc: Proc, timeout: float = 15) -> None:
        if proc.popen.poll() is None:
            proc.popen.send_signal(signal.SIGTERM)
            try:
                proc.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.popen.kill()
                proc.popen.wait()
        proc.log.close()
        if proc in self.running:
            self.running.remove(proc)

    def stop_all(self) -> None:
        for proc in reversed(list(self.running)):
            with contextlib.suppress(Exception):
                self.stop(proc)


class Daphne:
    """A daphne process serving ``app`` on a free port, started as the Procfile's web."""

    def __init__(
        self,
        procs: Procs,
        name: str,
        env: dict[str, str],
        app: str = "image2model.asgi:application",
        *,
        raise_nofile: bool = False,
    ) -> None:
        self.procs = procs
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        argv = [
            str(BIN / "daphne"),
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--proxy-headers",
            app,
        ]
        self.proc = procs.start(name, argv, env, raise_nofile=raise_nofile)
        self._wait_until_up()

    def _wait_until_up(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.proc.alive():
                raise RuntimeError(f"{self.proc.name} exited:\n{self.proc.log_tail()}")
            try:
                httpx.get(f"{self.url}/health", timeout=2)
                return
            except httpx.TransportError:
                time.sleep(0.2)
        raise RuntimeError(f"{self.proc.name} did not start:\n{self.proc.log_tail()}")

    def rss(self) -> int:
        return self.proc.rss()

    def stop(self) -> None:
        self.procs.stop(self.proc)


class RssSampler:
    """Samples a process's RSS in a thread; ``peak`` is the highest value seen."""

    def __init__(self, pid: int, interval: float = 0.005) -> None:
        self.process = psutil.Process(pid)
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(psutil.Error):
                self.peak = max(self.peak, self.process.memory_info().rss)
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self.peak = self.process.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        with contextlib.suppress(psutil.Error):
            self.peak = max(self.peak, self.process.memory_info().rss)


def settled_rss(proc: Proc, seconds: float = 1.0, samples: int = 5) -> int:
    """A process's RSS once it is idle: the median of a few samples over ``seconds``."""
    values = []
    for _ in range(samples):
        time.sleep(seconds / samples)
        values.append(proc.rss())
    return int(statistics.median(values))


# --- statistics --------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=float), q))


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def latency_summary(seconds: Sequence[float]) -> dict[str, float]:
    """p50/p99/max in milliseconds."""
    return {
        "n": len(seconds),
        "p50_ms": percentile(seconds, 50) * 1000,
        "p99_ms": percentile(seconds, 99) * 1000,
        "max_ms": max(seconds) * 1000,
    }


# --- results -----------------------------------------------------------------------------------


@dataclass
class Row:
    """One line of the table. ``ratio`` is value / baseline, in the units shown."""

    figure: str
    value: str
    baseline: str
    ratio: float | None
    target: str
    passed: bool | None  # None: no target for this row

    @property
    def status(self) -> str:
        if self.passed is None:
            return "-"
        return "PASS" if self.passed else "MISS"

    def as_dict(self) -> dict[str, Any]:
        return {
            "figure": self.figure,
            "value": self.value,
            "baseline": self.baseline,
            "ratio": self.ratio,
            "target": self.target,
            "status": self.status,
        }


@dataclass
class FigureResult:
    name: str
    rows: list[Row] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    error: str | None = None


def ratio(value: float, baseline: float) -> float | None:
    return value / baseline if baseline else None


def table(rows: Sequence[Row]) -> str:
    header = ("figure", "value", "baseline", "ratio", "target", "status")
    cells = [
        (
            r.figure,
            r.value,
            r.baseline,
            f"{r.ratio:.2f}x" if r.ratio is not None else "-",
            r.target,
            r.status,
        )
        for r in rows
    ]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(header)]
    line = "  ".join("-" * w for w in widths)
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)), line]
    out += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(out)


def machine_facts() -> dict[str, Any]:
    import django

    meminfo = Path("/proc/meminfo").read_text()
    total_kb = int(next(ln for ln in meminfo.splitlines() if ln.startswith("MemTotal")).split()[1])
    cpu = "unknown"
    with contextlib.suppress(OSError, StopIteration):
        cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
        cpu = next(ln for ln in cpuinfo if ln.startswith("model name")).split(":", 1)[1].strip()
    return {
        "nproc": os.cpu_count(),
        "ram_mb": round(total_kb / 1024),
        "cpu_model": cpu,
        "python": platform.python_version(),
        "django": django.get_version(),
        "platform": platform.platform(),
        "loadavg_at_start": os.getloadavg(),
    }


@contextlib.contextmanager
def timed() -> Iterator[list[float]]:
    """``with timed() as t: ...`` then ``t[0]`` is the elapsed seconds."""
    out: list[float] = []
    started = time.perf_counter()
    try:
        yield out
    finally:
        out.append(time.perf_counter() - started)


def mb(n_bytes: float) -> float:
    return n_bytes / 1_000_000
