"""Exec a command so that it dies with the bench: ``launch.py [--nofile] PROGRAM ARGS...``.

Sets PR_SET_PDEATHSIG (kept across exec), so a server or worker gets SIGTERM even when the
bench itself is killed, and with ``--nofile`` raises the soft open-files limit to the hard one
(as ``ulimit -n`` would). Run with ``python -S``: it needs nothing but the standard library,
and doing this in a separate exec is safer than a ``preexec_fn`` in a threaded parent.
"""

from __future__ import annotations

import ctypes
import os
import resource
import signal
import sys

PR_SET_PDEATHSIG = 1


def main() -> None:
    args = sys.argv[1:]
    if args and args[0] == "--nofile":
        args = args[1:]
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        target = hard if hard != resource.RLIM_INFINITY else 1_048_576
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, target), hard))
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    expected_parent = os.environ.get("BENCH_PARENT_PID")
    if expected_parent and os.getppid() != int(expected_parent):
        sys.exit("bench: the parent is gone")  # it died before the death signal was armed
    os.execv(args[0], args)  # noqa: S606  the bench starts its own programs on purpose


if __name__ == "__main__":
    main()
