"""The app of benchmark 3: records when its SIGHUP handler ran, nothing else.

Usage: ``python bench/app.py LOG PIDFILE``. Each SIGHUP appends ``time.monotonic()`` (CLOCK_MONOTONIC,
system-wide, so the bench compares it with its own clock) as one line to LOG, written from the
handler itself. It writes its pid to PIDFILE (atomically) and exits on SIGTERM, when its parent
dies, or after ``LIFETIME`` seconds, so an interrupted bench leaves nothing behind.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from types import FrameType

LIFETIME = 600.0


def main(log_path: str, pidfile: str) -> None:
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def on_hup(signum: int, frame: FrameType | None) -> None:
        os.write(fd, f"{time.monotonic():.6f}\n".encode())

    signal.signal(signal.SIGHUP, on_hup)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with open(pidfile + ".tmp", "w") as f:
        f.write(f"{os.getpid()}\n")
    os.replace(pidfile + ".tmp", pidfile)
    parent = os.getppid()
    deadline = time.monotonic() + LIFETIME
    # Sleeping is interrupted by the signal: the handler runs at once (PEP 475 resumes the sleep).
    while time.monotonic() < deadline and os.getppid() == parent:
        time.sleep(0.5)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
