"""The HTTP(S) listener under ``DevVault``: a threading server, one handler, the request body.

With TLS the listener asks for a client certificate (optional) and accepts one signed by any CA
that ``trust_client_ca`` was given (a ``cert`` auth role's CA); the handler passes the presented
certificate (DER) on, for ``auth/cert/login``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from devvault.wire import VaultError

if TYPE_CHECKING:
    from devvault.server import DevVault

__all__ = ["Server", "parse_body"]

logger = logging.getLogger("devvault.server")


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # socketserver's default backlog of 5 drops connections when a client opens 16 at once
    # (the injector's concurrent fetch), which then wait a ~1 s SYN retry.
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], vault: DevVault,
                 ssl_context: ssl.SSLContext | None) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.vault = vault
        self.ssl_context = ssl_context
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.debug("devserver: connection from %s ended with %s", client_address,
                     type(sys.exc_info()[1]).__name__)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Without this every keep-alive response waits ~40 ms for the client's delayed ACK.
    disable_nagle_algorithm = True
    server: Server

    def setup(self) -> None:
        if self.server.ssl_context is not None:
            self.request = self.server.ssl_context.wrap_socket(self.request, server_side=True)
        super().setup()
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        with self.server.connections_lock:
            self.server.connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        logger.debug("devserver: %s %s -> %s", self.command, urlsplit(self.path).path, code)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("devserver: %s", format % args)

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _serve(self) -> None:
        body = self._body()
        tls = isinstance(self.connection, ssl.SSLSocket)
        peer = self.connection.getpeercert(binary_form=True) if tls else None
        reply = self.server.vault._serve(self.command, self.path, dict(self.headers.items()),
                                         body, tls=tls, client_cert=peer)
        if reply is None:
            self.close_connection = True
            return
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Cache-Control", "no-store")
        for name, value in reply.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        if reply.body and self.command != "HEAD":
            self.wfile.write(reply.body)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_LIST = do_PATCH = do_OPTIONS = _serve


def parse_body(raw: bytes, content_type: str) -> dict[str, Any]:
    if not raw.strip():
        return {}
    if content_type.split(";")[0].strip().lower() == "application/x-www-form-urlencoded":
        return dict(parse_qsl(raw.decode(), keep_blank_values=True))
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise VaultError(400, f"failed to parse JSON input: {exc}") from exc
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise VaultError(400, "failed to parse JSON input: json: cannot unmarshal "
                              f"{type(value).__name__} into Go value of type "
                              "map[string]interface {}")
    return value
