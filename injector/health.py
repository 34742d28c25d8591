"""The probe and metrics endpoint: ``/healthz``, ``/readyz``, ``/metrics``.

``/healthz`` (liveness) and ``/readyz`` (readiness, and the native sidecar's startup probe) answer
200 ``ok`` or 503 with the reason as plain text, e.g. ``waiting for first render`` or
``stale: vault:secret/app last refreshed 16m ago (max_stale 15m)``. ``/metrics`` is the registry in
the Prometheus text format. Anything else is 404. GET and HEAD only; requests are logged at DEBUG.

Connections are served by at most ``max_connections`` threads (HTTP/1.1 keep-alive: a connection
keeps its thread until it closes or idles for ``IDLE_TIMEOUT``). A connection beyond that waits
``BUSY_WAIT`` for a free thread, then gets 503 and is closed. Errors are logged in one line, never
as a traceback on stderr.
"""

from __future__ import annotations

import logging
import os
import selectors
import socket
import socketserver
import sys
import threading
from collections.abc import Callable

from injector._imports import http_server_without_html_entities
from injector.errors import ConfigError
from injector.metrics import CONTENT_TYPE, Registry

http_server_without_html_entities()  # before http.server imports html
from http.server import BaseHTTPRequestHandler, HTTPServer  # noqa: E402

__all__ = ["HealthServer", "parse_address"]

logger = logging.getLogger(__name__)

Check = Callable[[], tuple[bool, str]]

#: Seconds a keep-alive connection may sit idle (or a request take to arrive) before it is closed.
IDLE_TIMEOUT = 15.0
#: Seconds a connection beyond ``max_connections`` waits for a free thread before its 503.
BUSY_WAIT = 1.0
_BUSY_BODY = b"busy: too many connections to the health server\n"
_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Content-Length: %d\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n%s"
) % (len(_BUSY_BODY), _BUSY_BODY)


def parse_address(address: str) -> tuple[str, int]:
    """Returns (host, port) from ``HOST:PORT``, ``:PORT`` or ``[::]:PORT``; an empty host is 0.0.0.0."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"health.address: expected HOST:PORT such as 0.0.0.0:8099, got {address!r}")
    host = host.strip("[]") or "0.0.0.0"  # noqa: S104 - probes come from the kubelet, off-host
    return host, int(port)


class _Server(HTTPServer):
    """Accepts on the health thread; serves each connection on a thread of its own, at most
    ``max_connections`` at once."""

    # handle_request() is only called once select() saw a connection: never wait in it.
    timeout = 0

    def __init__(self, address: tuple[str, int], health: HealthServer, max_connections: int) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.health = health
        self._slots = threading.BoundedSemaphore(max_connections)
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        """Binds as ``HTTPServer`` does, without its ``socket.getfqdn`` of the address: DNS lookups
        at start-up (for ``0.0.0.0``, the host's name, then its address in reverse DNS, which can
        take the resolver's whole timeout), for a name only CGI scripts read."""
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def process_request(self, request: socket.socket, client_address: tuple[str, int]) -> None:  # type: ignore[override]
        if not self._slots.acquire(timeout=BUSY_WAIT):
            logger.warning("health server busy: refused a connection from %s with 503", client_address[0])
            try:
                request.settimeout(BUSY_WAIT)
                request.sendall(_BUSY)
            except OSError:
                pass
            self.shutdown_request(request)
            return
        thread = threading.Thread(
            target=self._serve_connection, args=(request, client_address), name="injector-health-conn", daemon=True
        )
        try:
            thread.start()
        except BaseException:
            self._slots.release()
            raise

    def _serve_connection(self, request: socket.socket, client_address: tuple[str, int]) -> None:
        try:
            self.finish_request(request, client_address)
        except OSError as exc:
            # The client went away mid-response (reset, broken pipe): its business, not an error.
            logger.debug("health connection from %s ended: %s", client_address[0], exc)
        except Exception as exc:  # noqa: BLE001 - a bug in a handler must not end the server
            logger.error("health connection from %s failed: %s: %s", client_address[0], type(exc).__name__, exc)  # noqa: TRY400
        finally:
            self.shutdown_request(request)
            self._slots.release()

    def handle_error(self, request: object, client_address: object) -> None:
        """Logs one line where socketserver would print a traceback to stderr."""
        exc = sys.exc_info()[1]
        logger.error("health server: %s: %s", type(exc).__name__, exc)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    # Headers and body in one segment; without this, keep-alive clients meet delayed ACK (~40 ms).
    disable_nagle_algorithm = True
    # Idle keep-alive connections give their thread back after this many seconds.
    timeout = IDLE_TIMEOUT
    server_version = "injector"
    sys_version = ""

    def do_GET(self) -> None:
        self._respond(head=False)

    def do_HEAD(self) -> None:
        self._respond(head=True)

    def _respond(self, *, head: bool) -> None:
        path = self.path.split("?", 1)[0]
        health = self.server.health
        content_type = "text/plain; charset=utf-8"
        if path == "/healthz":
            status, body = self._check(health.live, "liveness")
        elif path == "/readyz":
            status, body = self._check(health.ready, "readiness")
        elif path == "/metrics":
            try:
                status, body, content_type = 200, health.registry.render(), CONTENT_TYPE
            except Exception as exc:  # noqa: BLE001 - answered 500, logged in one line
                logger.error("rendering /metrics failed: %s: %s", type(exc).__name__, exc)  # noqa: TRY400
                status, body = 500, "rendering metrics failed; see the sidecar log\n"
        else:
            status, body = 404, "not found: try /healthz, /readyz or /metrics\n"
        data = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if not head:
            self.wfile.write(data)

    @staticmethod
    def _check(check: Check, what: str) -> tuple[int, str]:
        try:
            ok, reason = check()
        except Exception as exc:  # noqa: BLE001 - answered 503, logged in one line
            logger.error("the %s check failed: %s: %s", what, type(exc).__name__, exc)  # noqa: TRY400
            return 503, f"{what} check failed: {type(exc).__name__}\n"
        if ok:
            return 200, "ok\n"
        return 503, (reason or "not ok").rstrip("\n") + "\n"

    def log_message(self, format: str, *args: object) -> None:
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("%s %s", self.address_string(), format % args)


class HealthServer:
    """Serves the probes and metrics on a thread of its own.

    Args:
        address: ``HOST:PORT``; port 0 picks a free port (see :attr:`port` after :meth:`start`).
        live: returns (ok, reason) for ``/healthz``.
        ready: returns (ok, reason) for ``/readyz``.
        registry: rendered by ``/metrics``.
        max_connections: connections served at once (one thread each); more wait, then get 503.
    """

    def __init__(
        self, address: str, *, live: Check, ready: Check, registry: Registry, max_connections: int = 8
    ) -> None:
        self.host, self._port = parse_address(address)
        self.live, self.ready, self.registry = live, ready, registry
        self.max_connections = max(1, max_connections)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._wake_r = self._wake_w = -1

    @property
    def port(self) -> int:
        """The port listened on: the actual one once started."""
        if self._server is not None:
            return int(self._server.server_address[1])
        return self._port

    def start(self) -> None:
        """Binds and starts serving.

        Raises:
            ConfigError: the address cannot be listened on (in use, not local, not permitted).
        """
        if self._server is not None:
            return
        try:
            self._server = _Server((self.host, self._port), self, self.max_connections)
        except OSError as exc:
            raise ConfigError(
                f"health.address: cannot listen on {self.host}:{self._port}: {exc.strerror or exc}"
            ) from exc
        # Non-blocking accept: a client that gives up between select() and accept() costs nothing.
        self._server.socket.setblocking(False)
        self._wake_r, self._wake_w = os.pipe()
        self._thread = threading.Thread(target=self._serve, args=(self._server,), name="injector-health", daemon=True)
        self._thread.start()
        logger.info("serving /healthz, /readyz and /metrics on %s:%d", self.host, self.port)

    def _serve(self, server: _Server) -> None:
        # Unlike serve_forever(), which polls every poll_interval to notice shutdown(), this sleeps
        # until a connection or stop(): no wake-ups while idle, and stop() is immediate.
        with selectors.DefaultSelector() as selector:
            selector.register(server, selectors.EVENT_READ)
            selector.register(self._wake_r, selectors.EVENT_READ)
            while True:
                events = selector.select()
                if any(key.fileobj == self._wake_r for key, _ in events):
                    return
                server.handle_request()

    def stop(self) -> None:
        """Stops serving and closes the socket."""
        server, thread = self._server, self._thread
        if server is None:
            return
        os.write(self._wake_w, b"x")
        if thread is not None:
            thread.join(5)
        server.server_close()
        os.close(self._wake_r)
        os.close(self._wake_w)
        self._server = self._thread = None
