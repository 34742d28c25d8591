"""A stand-in app for the signal tests: it records every SIGHUP and SIGUSR1 it gets to a file.

Usage: ``sigapp.py OUT [--worker]``. Start it through a symlink to the Python interpreter named
as the app should be: the kernel names the process after the file it executed (``/proc/PID/comm``).

It appends ``ready master PID`` to OUT once its handlers are installed. With ``--worker`` it first
forks a child with the same name (as nginx forks its workers), which appends ``ready worker PID``.
Each signal appends ``ROLE SIGNAME PID``. Both exit by themselves after 60 s, and a worker exits
when its master does, so a failed test leaves nothing behind.
"""

from __future__ import annotations

import os
import signal
import sys
import time

LIFETIME = 60.0


def main() -> None:
    out = sys.argv[1]
    role = ["master"]

    def record(line: str) -> None:
        with open(out, "a") as f:
            f.write(line + "\n")

    def on_signal(signum: int, _frame: object) -> None:
        record(f"{role[0]} {signal.Signals(signum).name} {os.getpid()}")

    signal.signal(signal.SIGHUP, on_signal)
    signal.signal(signal.SIGUSR1, on_signal)
    if "--worker" in sys.argv[2:] and os.fork() == 0:
        role[0] = "worker"
    parent = os.getppid()
    record(f"ready {role[0]} {os.getpid()}")
    deadline = time.monotonic() + LIFETIME
    while time.monotonic() < deadline and os.getppid() == parent:
        time.sleep(0.05)
    if role[0] == "worker":
        os._exit(0)


if __name__ == "__main__":
    main()
