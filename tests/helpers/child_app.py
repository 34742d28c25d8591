"""A stand-in app for the exec tests: reports its environment and the signals it receives.

Usage: ``child_app.py --out DIR [--env NAME]... [--exit CODE] [--kill-self] [--ignore-term]
[--term-delay S]``.

Files, named by its pid, in DIR:
* ``PID.env``: JSON of the ``--env`` variables (null when unset);
* ``PID.signals``: one ``SIGNAME MONOTONIC`` line per signal received (CLOCK_MONOTONIC is shared by
  every process, so tests compare these times with their own);
* ``PID.ready``: written last, once the handlers are installed.

SIGTERM and SIGINT end it with exit 0 after ``--term-delay`` seconds (a second one in that window is
still recorded) unless ``--ignore-term``. It exits by itself after 30 s, so nothing outlives a test.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

LIFETIME = 30.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--env", action="append", default=[])
    parser.add_argument("--exit", type=int, default=None)
    parser.add_argument("--kill-self", action="store_true")
    parser.add_argument("--ignore-term", action="store_true")
    parser.add_argument("--term-delay", type=float, default=0.0)
    args = parser.parse_args()
    pid = os.getpid()
    stop_at = [time.monotonic() + LIFETIME]

    def on_signal(signum: int, _frame: object) -> None:
        with open(args.out / f"{pid}.signals", "a") as f:
            f.write(f"{signal.Signals(signum).name} {time.monotonic()}\n")
        if signum in (signal.SIGTERM, signal.SIGINT) and not args.ignore_term:
            stop_at[0] = min(stop_at[0], time.monotonic() + args.term_delay)

    for signum in (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, on_signal)
    (args.out / f"{pid}.env").write_text(json.dumps({name: os.environ.get(name) for name in args.env}))
    (args.out / f"{pid}.ready.tmp").write_text("ready")
    (args.out / f"{pid}.ready.tmp").rename(args.out / f"{pid}.ready")
    if args.kill_self:
        os.kill(pid, signal.SIGKILL)
    if args.exit is not None:
        sys.exit(args.exit)
    while (left := stop_at[0] - time.monotonic()) > 0:
        time.sleep(min(left, 0.02))


if __name__ == "__main__":
    main()
