"""``injector webhook``: AdmissionReviews over HTTPS, probes and metrics on the same port.

* ``POST /mutate`` (any POST path): an AdmissionReview in, its answer out (``admission``). Bad
  bodies get a 4xx, never a crash: no or a huge ``Content-Length`` (411 / 413), not JSON or not an
  AdmissionReview (400), another media type (415), a client too slow to send its request (408).
* ``GET /healthz``, ``/readyz`` (not ready once SIGTERM arrived), ``/metrics`` (Prometheus text).
* The certificate pair is re-read when either file changes (cert-manager rotates the Secret and
  kubelet swaps the mounted files): each new connection is wrapped with the newest SSLContext, so
  connections already open keep theirs and none is dropped. A pair that fails to load (caught
  half-written) keeps the previous context and is retried at the next connection.
* Concurrency is bounded (``max_connections``): beyond it a connection is closed at once rather
  than queued behind slow ones. Every socket has a timeout, so no worker waits forever.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import selectors
import signal
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from injector.errors import ConfigError
from injector.health import parse_address
from injector.metrics import CONTENT_TYPE
from injector.webhook.admission import DEFAULT_EXCLUDED, Admission, BadReview
from injector.webhook.keys import load_defaults
from injector.webhook.patch import Settings

__all__ = ["CertificateStore", "WebhookServer", "parse_version", "serve_webhook"]

logger = logging.getLogger(__name__)

#: An AdmissionReview carries the object (and oldObject on UPDATE); etcd objects are at most ~1.5 MiB.
MAX_BODY = 4 * 1024 * 1024


class CertificateStore:
    """The server's SSLContext, rebuilt when the certificate or key file changes.

    Files are compared by (inode, size, mtime) after following symlinks, at most every
    ``check_interval`` seconds, on the accept path (one ``stat`` pair, no thread, no wake-ups).
    """

    def __init__(self, cert: Path, key: Path, *, check_interval: float = 1.0) -> None:
        self.cert, self.key = cert, key
        self.check_interval = check_interval
        self._lock = threading.Lock()
        self._stamp = self._read_stamp()
        self._context = self._load()
        self._checked = time.monotonic()
        self.reloads = 0

    def _read_stamp(self) -> tuple[tuple[int, int, int], ...]:
        stats = [os.stat(p) for p in (self.cert, self.key)]
        return tuple((s.st_ino, s.st_size, s.st_mtime_ns) for s in stats)

    def _load(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.cert, self.key)
        return context

    def context(self) -> ssl.SSLContext:
        """The newest context whose pair loaded."""
        now = time.monotonic()
        with self._lock:
            if now - self._checked < self.check_interval:
                return self._context
            self._checked = now
            try:
                stamp = self._read_stamp()
                if stamp != self._stamp:
                    self._context = self._load()
                    self._stamp = stamp
                    self.reloads += 1
                    logger.info("loaded the new TLS certificate %s", self.cert)
            except (OSError, ssl.SSLError) as exc:
                logger.warning("cannot load the TLS certificate %s (keeping the previous one): %s", self.cert, exc)
            return self._context


class _Handler(BaseHTTPRequestHandler):
    server: WebhookServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "injector-webhook"
    sys_version = ""

    def handle(self) -> None:
        try:
            self.connection.do_handshake()  # an SSLSocket (WebhookServer.get_request)
        except (OSError, ssl.SSLError) as exc:
            logger.debug("TLS handshake with %s failed: %s", self.client_address[0], exc)
            return
        super().handle()

    def parse_request(self) -> bool:
        try:
            return super().parse_request()
        except TimeoutError:
            self.send_error(408, "Request Timeout", "the request headers did not arrive in time")
            return False

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/healthz":
            self._send(200, b"ok\n")
        elif path == "/readyz":
            ready = self.server.ready.is_set()
            self._send(200 if ready else 503, b"ok\n" if ready else b"shutting down\n")
        elif path == "/metrics":
            self._send(200, self.server.admission.registry.render().encode(), CONTENT_TYPE)
        else:
            self._send(404, b"not found: POST AdmissionReviews to /mutate; GET /healthz, /readyz, /metrics\n")

    def do_POST(self) -> None:
        length_text = self.headers.get("Content-Length")
        if length_text is None or not length_text.isdigit():
            self.close_connection = True
            self._send(411, b"a Content-Length is required\n")
            return
        length = int(length_text)
        if length > MAX_BODY:
            self.close_connection = True  # the body is not read: the connection cannot be reused
            self._send(413, f"the body is over {MAX_BODY} bytes\n".encode())
            return
        media = (self.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
        if media != "application/json":
            self.close_connection = True
            self._send(415, b"expected Content-Type: application/json\n")
            return
        body = self._read_body(length)
        if body is None:
            return
        try:
            answer = self.server.admission.handle(body)
        except BadReview as exc:
            self._send(400, f"{exc}\n".encode())
            return
        self._send(200, json.dumps(answer, separators=(",", ":")).encode(), "application/json")

    def _read_body(self, length: int) -> bytes | None:
        deadline = time.monotonic() + self.server.client_timeout
        chunks: list[bytes] = []
        left = length
        while left:
            try:
                chunk = self.rfile.read1(min(left, 65536)) if time.monotonic() < deadline else None
            except TimeoutError:
                chunk = None
            if chunk is None:
                self.close_connection = True
                self._send(408, b"the body did not arrive in time\n")
                return None
            if not chunk:
                self.close_connection = True
                return None
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    def _send(self, status: int, body: bytes, content_type: str = "text/plain; charset=utf-8") -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
        except OSError as exc:
            self.close_connection = True
            logger.debug("cannot answer %s: %s", self.client_address[0], exc)

    def log_message(self, format: str, *args: object) -> None:
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("%s %s", self.client_address[0], format % args)


class WebhookServer(ThreadingHTTPServer):
    """The HTTPS server; ``serve()`` runs until ``stop()``.

    Args:
        address: ``HOST:PORT`` or ``:PORT`` (port 0 picks one; see ``port``).
        client_timeout: seconds a client may take for each read, and for a whole body.
    """

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    # The API server opens a connection per concurrent review under a burst: let them queue.
    request_queue_size = 128
    timeout = 0

    def __init__(
        self,
        address: str,
        admission: Admission,
        certificates: CertificateStore,
        *,
        client_timeout: float = 10.0,
        max_connections: int = 256,
    ) -> None:
        host, port = parse_address(address)
        if ":" in host:
            self.address_family = socket.AF_INET6
        self.admission = admission
        self.certificates = certificates
        self.client_timeout = client_timeout
        self.max_connections = max_connections
        self._slots = threading.BoundedSemaphore(max_connections)
        self.ready = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        try:
            super().__init__((host, port), _Handler)
        except OSError as exc:
            raise ConfigError(f"--listen: cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
        self.socket.setblocking(False)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def get_request(self) -> tuple[Any, Any]:
        sock, address = self.socket.accept()
        sock.setblocking(True)
        sock.settimeout(self.client_timeout)
        # No I/O here: the handshake runs in the connection's own thread (a slow client stalls nobody).
        wrapped = self.certificates.context().wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return wrapped, address

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            logger.warning("%d connections open, the most allowed: closing a new one", self.max_connections)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except Exception:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # socketserver calls this inside its except block: the traceback is the current exception.
        logger.warning("connection from %s failed", client_address[0] if client_address else "?", exc_info=True)  # noqa: LOG014

    def serve(self) -> None:
        """Serves until ``stop()``: sleeps in select(), no periodic wake-ups."""
        self.ready.set()
        with selectors.DefaultSelector() as selector:
            selector.register(self, selectors.EVENT_READ)
            selector.register(self._wake_r, selectors.EVENT_READ)
            while True:
                events = selector.select()
                if any(key.fileobj == self._wake_r for key, _ in events):
                    return
                self.handle_request()  # timeout 0: never waits; accept errors go to handle_error

    def stop(self) -> None:
        self.ready.clear()
        os.write(self._wake_w, b"x")

    def server_close(self) -> None:
        super().server_close()
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)


def run(server: WebhookServer, *, shutdown_delay: float) -> int:
    """Serves until SIGTERM/SIGINT; then /readyz fails for ``shutdown_delay`` (endpoints catch up), exit 0."""
    stopping = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        logger.info("received %s: stopping in %gs", signal.Signals(signum).name, shutdown_delay)
        server.ready.clear()
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    thread = threading.Thread(target=server.serve, name="injector-webhook", daemon=True)
    thread.start()
    logger.info("serving AdmissionReviews on https://%s:%d/mutate", server.server_address[0], server.port)
    stopping.wait()
    time.sleep(shutdown_delay)
    server.stop()
    thread.join(5)
    server.server_close()
    return 0


def parse_version(text: str) -> tuple[int, int]:
    """``1.29``, ``v1.30.2`` or ``1.31+`` (as some providers report it) → (1, 29)."""
    parts = text.strip().lstrip("v").split(".")
    try:
        return int(parts[0]), int(parts[1].rstrip("+").split("-")[0])
    except (IndexError, ValueError):
        raise ConfigError(f"--kubernetes-version: expected MAJOR.MINOR such as 1.29, got {text!r}") from None


def serve_webhook(
    *,
    listen: str,
    tls_cert: Path,
    tls_key: Path,
    image: str,
    kubernetes_version: str,
    defaults: Path | None = None,
    exclude: tuple[str, ...] = (),
    shutdown_delay: float = 5.0,
) -> int:
    """``injector webhook``: builds the admission handler and the server, serves until SIGTERM.

    Raises:
        ConfigError: a flag, the defaults file or the certificate pair is unusable.
    """
    settings = Settings(image=image, kubernetes_version=parse_version(kubernetes_version))
    defaults_map = load_defaults(defaults) if defaults is not None else {}
    try:
        certificates = CertificateStore(tls_cert, tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"--tls-cert/--tls-key: cannot load {tls_cert} and {tls_key}: {exc}") from None
    excluded = (*DEFAULT_EXCLUDED, *exclude)
    admission = Admission(settings, defaults=defaults_map, excluded=excluded)
    # Imported now, not at the first review: the first pod must not pay for Jinja2 and the engine.
    import injector.modes.validate  # noqa: F401

    server = WebhookServer(listen, admission, certificates)
    logger.info(
        "webhook: image %s, Kubernetes %d.%d (native sidecars %s), excluded namespaces %s",
        image,
        *settings.kubernetes_version,
        "on" if settings.kubernetes_version >= (1, 29) else "off",
        ",".join(sorted(set(excluded))),
    )
    return run(server, shutdown_delay=shutdown_delay)
