"""A stand-in for the app container of a simulated pod: an app that re-reads its files when it uses them.

Usage: ``pod_app.py MOUNT_PATH PORT PROBE_PATH [NAME]``. It serves HTTP on 127.0.0.1:PORT:

- ``GET PROBE_PATH``: 200 while MOUNT_PATH holds at least one readable file (its readinessProbe);
- ``GET /files/NAME``: 200 with the SHA-256 of MOUNT_PATH/NAME as read now, 404 when missing;
- ``GET /sighups``: a JSON list, one entry a SIGHUP received: ``{"from": PID, "files": {NAME:
  SHA-256}}``, the sender's pid (as this app's PID namespace numbers it) and every file of
  MOUNT_PATH as read when the signal arrived, the way nginx re-reads its certificate on SIGHUP.

Digests, not contents: enough for a test to see a change, and no secret on the wire.

NAME, when given, becomes the process name (``/proc/PID/comm``), so that a notifier that signals
the app's process by name (``SIGHUP nginx``) finds this stand-in. It exits on SIGTERM, or after
120 s, so a failed test leaves nothing behind.
"""

from __future__ import annotations

import ctypes
import hashlib
import http.server
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

LIFETIME = 120.0
PR_SET_NAME = 15


def _digests(mount: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in mount.iterdir() if p.is_file()}


def _record_sighups(mount: Path, received: list[dict[str, Any]], lock: threading.Lock) -> None:
    """Waits for SIGHUPs (blocked in every thread, so they stay pending for sigwaitinfo) and records each."""
    while True:
        info = signal.sigwaitinfo({signal.SIGHUP})
        entry = {"from": info.si_pid, "files": _digests(mount)}
        with lock:
            received.append(entry)


def main() -> None:
    mount, port, probe = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    if len(sys.argv) > 4:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_NAME, sys.argv[4].encode()[:15], 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_NAME)")
    received: list[dict[str, Any]] = []
    lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == probe:
                files = [p for p in mount.iterdir() if p.is_file()]
                ready = bool(files) and all(os.access(p, os.R_OK) for p in files)
                self._answer(200 if ready else 503, b"ok\n" if ready else b"no readable files yet\n")
            elif self.path == "/sighups":
                with lock:
                    body = json.dumps(received).encode()
                self._answer(200, body)
            elif self.path.startswith("/files/"):
                path = mount / self.path.removeprefix("/files/")
                if path.parent != mount or not path.is_file():
                    self._answer(404, b"no such file\n")
                else:
                    self._answer(200, hashlib.sha256(path.read_bytes()).hexdigest().encode())
            else:
                self._answer(404, b"not found\n")

        def _answer(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    # Blocked before the recorder starts, so that every thread inherits the mask.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})
    threading.Thread(target=_record_sighups, args=(mount, received, lock), daemon=True).start()
    server = http.server.HTTPServer(("127.0.0.1", port), Handler)
    server.timeout = 0.2
    deadline = time.monotonic() + LIFETIME
    while time.monotonic() < deadline:
        server.handle_request()


if __name__ == "__main__":
    main()
