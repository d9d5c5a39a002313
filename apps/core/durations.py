"""Parsing operator durations: 30s, 15m, 24h, 30d, 2w."""

from __future__ import annotations

import argparse
import re
from datetime import timedelta

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: str) -> timedelta:
    """A positive duration like ``24h``; argparse shows the ValueError's message on failure."""
    match = _DURATION.match(text or "")
    if match is None or float(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a duration; use a number and a unit: 30s, 15m, 24h, 30d, 2w"
        )
    return timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})


def duration_text(duration: timedelta) -> str:
    """``24h``, ``90m``, ``1s``: the largest unit that divides it, as an operator writes it."""
    seconds = duration.total_seconds()
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
