"""A stand-in for the app container of deploy/'s pod: an app that re-reads its files when it uses them.

Usage: ``pod_app.py MOUNT_PATH PORT PROBE_PATH``. It serves HTTP on 127.0.0.1:PORT:

- ``GET PROBE_PATH``: 200 while MOUNT_PATH holds at least one readable file (its readinessProbe);
- ``GET /files/NAME``: 200 with the SHA-256 of MOUNT_PATH/NAME as read now, 404 when missing.
  A digest, not the content: enough for a test to see a change, and no secret on the wire.

It exits on SIGTERM, or after 120 s, so a failed test leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import http.server
import os
import signal
import sys
import time
from pathlib import Path

LIFETIME = 120.0


def main() -> None:
    mount, port, probe = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == probe:
                files = [p for p in mount.iterdir() if p.is_file()]
                ready = bool(files) and all(os.access(p, os.R_OK) for p in files)
                self._answer(200 if ready else 503, b"ok\n" if ready else b"no readable files yet\n")
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
    server = http.server.HTTPServer(("127.0.0.1", port), Handler)
    server.timeout = 0.2
    deadline = time.monotonic() + LIFETIME
    while time.monotonic() < deadline:
        server.handle_request()


if __name__ == "__main__":
    main()
