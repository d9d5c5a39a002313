"""Log analysis that streams: it reads line by line (gzip too) and keeps only counters, so a
500 MB log never sits in memory. Latencies are counted by value at the 0.01 ms the log lines
carry: the percentiles are exact, and memory grows with the number of distinct latencies, not
with the number of requests."""

from __future__ import annotations

import gzip
import json
import math
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
SLOW_REQUEST_MS = 5000


@dataclass
class Analysis:
    since: datetime
    until: datetime
    lines: int = 0
    unreadable: int = 0
    levels: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)
    routes: Counter = field(default_factory=Counter)
    route_errors: Counter = field(default_factory=Counter)
    per_hour: dict[str, list[int]] = field(default_factory=dict)  # hour → [requests, errors]
    latencies: Counter = field(default_factory=Counter)  # hundredths of a ms → requests
    slow: int = 0

    def add(self, entry: dict[str, Any], when: datetime) -> None:
        self.lines += 1
        level = str(entry.get("level", "INFO")).upper()
        self.levels[level] += 1
        if level in ("ERROR", "CRITICAL"):
            self.errors[str(entry.get("message", ""))[:200]] += 1
        if "route" in entry and "status" in entry:
            self._add_request(entry, when)

    def _add_request(self, entry: dict[str, Any], when: datetime) -> None:
        route = f"{entry.get('method', '')} {entry['route']}".strip()
        self.routes[route] += 1
        failed = int(entry.get("status") or 0) >= 500
        hour = when.strftime("%Y-%m-%dT%H:00")
        bucket = self.per_hour.setdefault(hour, [0, 0])
        bucket[0] += 1
        if failed:
            self.route_errors[route] += 1
            bucket[1] += 1
        duration = entry.get("duration_ms")
        if isinstance(duration, (int, float)):
            self.latencies[round(duration * 100)] += 1
            if duration > SLOW_REQUEST_MS:
                self.slow += 1

    def result(self, top: int = 10) -> dict[str, Any]:
        requests = sum(self.routes.values())
        failed = sum(self.route_errors.values())
        ordered = sorted(self.latencies.items())
        return {
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "lines_analyzed": self.lines,
            "unreadable_lines": self.unreadable,
            "log_levels": {level: self.levels.get(level, 0) for level in LEVELS},
            "top_errors": [{"message": m, "count": c} for m, c in self.errors.most_common(top)],
            "top_endpoints": [{"route": r, "count": c} for r, c in self.routes.most_common(top)],
            "requests": requests,
            "error_rate": round(failed / requests * 100, 2) if requests else 0.0,
            "latency_ms": {
                "p50": _percentile(ordered, 50),
                "p95": _percentile(ordered, 95),
                "p99": _percentile(ordered, 99),
            },
            "slow_requests": self.slow,
            "per_hour": [
                {"hour": hour, "requests": counts[0], "errors": counts[1]}
                for hour, counts in sorted(self.per_hour.items())
            ],
        }


def _percentile(ordered: list[tuple[int, int]], percent: float) -> float | None:
    """Nearest-rank percentile of sorted (value in hundredths of a ms, count) pairs."""
    total = sum(count for _, count in ordered)
    if not total:
        return None
    rank = max(1, math.ceil(percent / 100 * total))
    seen = 0
    for value, count in ordered:
        seen += count
        if seen >= rank:
            return round(value / 100, 2)
    return None


def log_files(folder: Path, name: str) -> list[Path]:
    """The live log and its rotated, gzipped copies."""
    return sorted(folder.glob(f"{name}*"))


def _lines(path: Path) -> Iterator[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as stream:
        yield from stream


def analyze(paths: Iterable[Path], since: datetime, until: datetime) -> Analysis:
    """Read every line of ``paths`` and count those logged in [since, until)."""
    analysis = Analysis(since=since, until=until)
    for path in paths:
        for line in _lines(path):
            try:
                entry = json.loads(line)
                when = datetime.fromisoformat(entry["time"])
            except (ValueError, KeyError, TypeError):
                analysis.unreadable += 1
                continue
            if since <= when < until:
                analysis.add(entry, when)
    return analysis
