"""A stand-in app for the sidecar tests: on start and on every SIGHUP it reads one file and
appends ``<event> <content>`` to a log, so a test can count reloads and see what each one read.

Usage: ``reload_app.py LOG PIDFILE WATCHED_FILE``. It writes its pid to PIDFILE, exits on SIGTERM,
when its parent dies, or after 120 s, so a failed test leaves nothing behind. Test values only:
this app prints what it reads, as a real app would use it.
"""

from __future__ import annotations

import os
import signal
import sys
import time

LIFETIME = 120.0


def main() -> None:
    log_path, pidfile, watched = sys.argv[1:4]
    pending: list[str] = []

    def read() -> str:
        try:
            with open(watched) as f:
                return f.read().strip().replace("\n", "|")
        except OSError as exc:
            return f"<unreadable: {exc.strerror}>"

    def record(event: str) -> None:
        with open(log_path, "a") as f:
            f.write(f"{event} {read()}\n")

    signal.signal(signal.SIGHUP, lambda *_: pending.append("reload"))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with open(pidfile + ".tmp", "w") as f:
        f.write(f"{os.getpid()}\n")
    os.replace(pidfile + ".tmp", pidfile)
    record("start")
    parent = os.getppid()
    deadline = time.monotonic() + LIFETIME
    while time.monotonic() < deadline and os.getppid() == parent:
        while pending:
            pending.pop()
            record("reload")
        time.sleep(0.01)


if __name__ == "__main__":
    main()
