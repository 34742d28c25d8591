"""A stand-in app for the ``injector exec`` tests: reports every start, its environment and signals.

Usage: ``exec_app.py --out DIR [--env NAME]... [--term-exit CODE] [--exit CODE] [--kill-self]
[--crash-if NAME=VALUE] [--orphans N] [--read FILE]``.

Files in DIR:
* ``starts``: one ``PID MONOTONIC`` line per start, appended first thing (CLOCK_MONOTONIC is
  shared by every process, so tests compare the gaps);
* ``PID.env``: JSON of the ``--env`` variables (null when unset);
* ``PID.signals``: one ``SIGNAME`` line per signal received (``SIGHUP TEXT`` with ``--read``: the
  first line of FILE as read on SIGHUP, the way an app reloads its config);
* ``PID.ready``: written once the handlers are installed;
* ``PID.orphans`` (with ``--orphans``): JSON ``{"orphans": [...], "zombies": [...]}``.

``--crash-if NAME=VALUE`` exits 3 at once when the variable has that value. ``--orphans N`` forks N
processes whose parent exits at once (so PID 1 inherits them), waits until they have exited, then
waits up to 5 s for PID 1 to reap them and reports the zombies left. SIGTERM and SIGINT end it with
``--term-exit`` (0). It exits by itself after 30 s, so nothing outlives a test.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

LIFETIME = 30.0


def _state(pid: int) -> str:
    """The process state letter ("Z" for a zombie), or "" once the pid is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return ""


def _orphans(count: int) -> list[int]:
    """Forks ``count`` orphans that exit after 0.1 s; returns their pids."""
    leaves = []
    for _ in range(count):
        read_end, write_end = os.pipe()
        middle = os.fork()
        if middle == 0:
            leaf = os.fork()
            if leaf == 0:
                time.sleep(0.1)
                os._exit(0)
            os.write(write_end, str(leaf).encode())
            os._exit(0)
        os.close(write_end)
        leaves.append(int(os.read(read_end, 32)))
        os.close(read_end)
        os.waitpid(middle, 0)
    return leaves


def _wait(predicate: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.01)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--env", action="append", default=[])
    parser.add_argument("--term-exit", type=int, default=0)
    parser.add_argument("--exit", type=int, default=None)
    parser.add_argument("--kill-self", action="store_true")
    parser.add_argument("--crash-if", default=None)
    parser.add_argument("--orphans", type=int, default=0)
    parser.add_argument("--read", type=Path, default=None)
    args = parser.parse_args()
    pid = os.getpid()
    with open(args.out / "starts", "a") as f:
        f.write(f"{pid} {time.monotonic()}\n")
    if args.crash_if:
        name, _, value = args.crash_if.partition("=")
        if os.environ.get(name) == value:
            sys.exit(3)
    end = {"at": time.monotonic() + LIFETIME, "code": 0}

    def on_signal(signum: int, _frame: object) -> None:
        line = signal.Signals(signum).name
        if signum == signal.SIGHUP and args.read is not None:
            line += " " + args.read.read_text().split("\n", 1)[0]
        with open(args.out / f"{pid}.signals", "a") as f:
            f.write(f"{line}\n")
        if signum in (signal.SIGTERM, signal.SIGINT):
            end.update(at=0.0, code=args.term_exit)

    for signum in (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, on_signal)
    (args.out / f"{pid}.env").write_text(json.dumps({name: os.environ.get(name) for name in args.env}))
    (args.out / f"{pid}.ready.tmp").write_text("ready")
    (args.out / f"{pid}.ready.tmp").rename(args.out / f"{pid}.ready")
    if args.orphans:
        leaves = _orphans(args.orphans)
        _wait(lambda: all(_state(leaf) in ("Z", "") for leaf in leaves), 5.0)
        _wait(lambda: not any(_state(leaf) == "Z" for leaf in leaves), 5.0)
        report = {"orphans": leaves, "zombies": [leaf for leaf in leaves if _state(leaf) == "Z"]}
        (args.out / f"{pid}.orphans").write_text(json.dumps(report))
    if args.kill_self:
        os.kill(pid, signal.SIGKILL)
    if args.exit is not None:
        sys.exit(args.exit)
    while time.monotonic() < end["at"]:
        time.sleep(0.02)
    sys.exit(int(end["code"]))


if __name__ == "__main__":
    main()
