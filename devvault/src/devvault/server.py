"""The HTTP layer: ``DevVault`` (start, stop, test knobs) and the request handler.

Steps of one request (``DevVault._serve``):

1. outage on → drop the connection without an answer (hvac raises ``requests.ConnectionError``);
2. sleep the configured latency (outside every lock, so concurrent requests overlap);
3. log (method, path); paths outside ``/v1/`` → 404 ``{"errors":[]}``;
4. maybe fail on purpose (``set_error_rate``);
5. parse the operation, token, namespace and body, and hand the request to ``Core.handle``.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import random
import re
import socket
import ssl
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from urllib.parse import parse_qsl, unquote, urlsplit

from cryptography.hazmat.primitives import serialization

from devvault.certs import issue, make_ca, new_key, private_pem
from devvault.core import Core
from devvault.database import DatabaseBackend
from devvault.leases import LeaseState
from devvault.listener import Server, parse_body
from devvault.params import parse_duration
from devvault.wire import JSON, Reply, Request, VaultError, error_body

__all__ = ["DevVault"]

logger = logging.getLogger(__name__)

_LOOPBACK = {"127.0.0.1": "127.0.0.1", "localhost": "127.0.0.1", "::1": "::1"}
_OPS = {"GET": "read", "HEAD": "head", "POST": "update", "PUT": "update", "DELETE": "delete",
        "LIST": "list", "PATCH": "patch"}
_INJECTED = {
    412: "required index state not present",
    500: "internal error",
    502: "upstream rate limited",
    503: "Vault is sealed",
}


class DevVault:
    """An in-memory Vault-API-compatible server on loopback, for tests, the demo and local use.

    See the package docstring for the routes, the dev defaults and the knobs.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0,
                 root_token: str = "root",  # noqa: S107 (the dev root token, like vault -dev)
                 tls: bool = False, kv_v1_mount: str | None = None) -> None:
        if host not in _LOOPBACK:
            raise ValueError(f"the dev server listens on loopback only, not {host!r}")
        self._host = _LOOPBACK[host]
        self._port = port
        self._root_token = root_token
        self._tls = tls
        self._core = Core(root_token=root_token, kv_v1_mount=kv_v1_mount)
        self._core.on_client_ca = self.trust_client_ca
        self._context: ssl.SSLContext | None = None
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self._ca_pem: str | None = None
        self._knobs = threading.Lock()
        self._latency = 0.0
        self._error_rate = 0.0
        self._error_status = 500
        self._error_paths: re.Pattern[str] | None = None
        self._outage = False
        self._log: list[tuple[str, str]] = []
        self._client_cas: list[str] = []
        self._random = random.Random()

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> DevVault:
        """Starts serving in a daemon thread (idempotent) and returns self."""
        if self._server is not None:
            return self
        context = self._tls_context() if self._tls else None
        self._server = Server((self._host, self._port), self, context)
        self._port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.01},
                                        name=f"devvault-{self._port}", daemon=True)
        self._thread.start()
        logger.info("devserver: listening on %s", self.address)
        return self

    def stop(self) -> None:
        """Stops the server and closes open keep-alive connections (idempotent)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        with server.connections_lock:
            connections = list(server.connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)
        logger.info("devserver: stopped")

    def __enter__(self) -> DevVault:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def _tls_context(self) -> ssl.SSLContext:
        now = time.time()
        ca = make_ca("injector devserver TLS CA", now=now, ttl=365 * 86400)
        key = new_key("ec")
        cert = issue(ca, common_name="localhost", dns_names=["localhost"],
                     ip_sans=["127.0.0.1", "::1"], now=now, ttl=365 * 86400, key=key)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        with tempfile.TemporaryDirectory(prefix="devvault-tls-") as tmp:
            cert_file, key_file = Path(tmp, "cert.pem"), Path(tmp, "key.pem")
            cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
            key_file.write_text(private_pem(key))
            context.load_cert_chain(cert_file, key_file)
        # Ask for a client certificate (cert auth) without requiring one. Python cannot accept an
        # unverified one, so it must chain to a CA given to trust_client_ca.
        context.verify_mode = ssl.CERT_OPTIONAL
        with self._knobs:
            self._ca_pem = ca.pem
            self._context = context
            for pem in self._client_cas:
                context.load_verify_locations(cadata=pem)
        return context

    def trust_client_ca(self, pem: str) -> None:
        """Accepts TLS client certificates signed by ``pem`` (a cert auth role does this itself).

        Without it a client certificate fails the TLS handshake; once trusted, a CA stays
        trusted by the listener (``auth/cert/login`` still checks the role's own CA).
        """
        with self._knobs:
            if pem in self._client_cas:
                return
            self._client_cas.append(pem)
            if self._context is not None:
                self._context.load_verify_locations(cadata=pem)

    # -- properties ------------------------------------------------------------------------------

    @property
    def address(self) -> str:
        host = f"[{self._host}]" if ipaddress.ip_address(self._host).version == 6 else self._host
        return f"{'https' if self._tls else 'http'}://{host}:{self._port}"

    @property
    def port(self) -> int:
        return self._port

    @property
    def root_token(self) -> str:
        return self._root_token

    @property
    def ca_pem(self) -> str | None:
        """PEM of the CA that signed the TLS listener's certificate (None without TLS)."""
        return self._ca_pem

    # -- knobs -----------------------------------------------------------------------------------

    def set_latency(self, seconds: float) -> None:
        """Delays every response by ``seconds``."""
        with self._knobs:
            self._latency = max(0.0, seconds)

    def set_error_rate(self, rate: float, status: int = 500, paths: str | None = None) -> None:
        """Fails ``rate`` (0..1) of requests with ``status`` and a Vault error body.

        ``paths`` is a regular expression matched at the start of the path relative to ``/v1/``
        (so a plain prefix such as ``secret/data/`` works); None means every path.
        """
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"rate must be between 0 and 1, got {rate!r}")
        # Compile before changing anything, so a bad pattern leaves the knobs as they were.
        pattern = re.compile(paths.removeprefix("/v1/")) if paths else None
        with self._knobs:
            self._error_rate = rate
            self._error_status = status
            self._error_paths = pattern

    def set_outage(self, on: bool) -> None:
        """While on, every request gets its connection closed without an answer."""
        with self._knobs:
            self._outage = on

    def seal(self) -> None:
        with self._core.lock:
            self._core.sealed = True

    def unseal(self) -> None:
        with self._core.lock:
            self._core.sealed = False

    def advance_clock(self, seconds: float) -> None:
        """Moves the server's "now" forward: TTLs, token and lease expiry all follow it."""
        with self._core.lock:
            self._core.clock.advance(seconds)
            self._core.sweep()

    def request_count(self, path_prefix: str = "") -> int:
        """Requests served so far whose path starts with ``/v1/<path_prefix>``."""
        wanted = "/v1/" + path_prefix.lstrip("/")
        with self._knobs:
            return sum(1 for _, path in self._log if path.startswith(wanted))

    def reset_counts(self) -> None:
        with self._knobs:
            self._log.clear()

    @property
    def request_log(self) -> list[tuple[str, str]]:
        """(method, path) of every request served, in order (a copy)."""
        with self._knobs:
            return list(self._log)

    def lease_state(self, lease_id: str) -> LeaseState:
        """``active``, ``expired``, ``revoked`` or ``unknown``."""
        with self._core.lock:
            self._core.sweep()
            return self._core.leases.state(lease_id)

    def active_leases(self, prefix: str = "") -> list[str]:
        """IDs of the live leases whose ID starts with ``prefix`` (e.g. ``database/creds/dev``)."""
        with self._core.lock:
            self._core.sweep()
            return self._core.leases.active(prefix)

    def check_db_credentials(self, username: str, password: str, mount: str = "database",
                             namespace: str = "") -> bool:
        """True while a username/password pair issued by the database mount still works."""
        with self._core.lock:
            self._core.sweep()
            found = self._core.mounts(namespace).find(mount)
            backend = found[0].backend if found else None
            return isinstance(backend, DatabaseBackend) and backend.check(username, password)

    # -- one request -----------------------------------------------------------------------------

    def _serve(self, method: str, target: str, headers: dict[str, str],
               body: bytes, *, tls: bool = False,
               client_cert: bytes | None = None) -> Reply | None:
        with self._knobs:
            outage, latency = self._outage, self._latency
            rate, status, paths = self._error_rate, self._error_status, self._error_paths
        if outage:
            return None
        if latency:
            time.sleep(latency)
        url = urlsplit(target)
        with self._knobs:
            self._log.append((method, url.path))
        if not url.path.startswith("/v1/"):
            return Reply(status=404, body=error_body([]))
        path = unquote(url.path[4:])
        while "//" in path:
            path = path.replace("//", "/")
        path = path.strip("/")
        if rate and (paths is None or paths.match(path)) and self._random.random() < rate:
            message = (f'request path "{path}": rate limit quota exceeded' if status == 429
                       else _INJECTED.get(status, f"dev server: injected failure ({status})"))
            return Reply(status=status, body=error_body([message]))
        lower = {name.lower(): value for name, value in headers.items()}
        try:
            req = self._request(method, url.query, path, lower, body)
            req.tls, req.client_cert = tls, client_cert
            return self._core.handle(req)
        except VaultError as exc:
            return exc.reply()
        except Exception as exc:
            # The traceback only at DEBUG: an exception's text may quote request data.
            logger.error(  # noqa: TRY400
                "devserver: %s %s failed: %s", method, url.path, type(exc).__name__)
            logger.debug("devserver: traceback", exc_info=True)
            return Reply(status=500, body=error_body(["internal error"]))

    @staticmethod
    def _request(method: str, query: str, path: str, headers: dict[str, str],
                 body: bytes) -> Request:
        params = dict(parse_qsl(query, keep_blank_values=True))
        op = _OPS.get(method)
        if op is None:
            raise VaultError(405, "unsupported operation")
        if op == "read" and params.pop("list", "").lower() in ("true", "1"):
            op = "list"
        wrap_ttl = 0
        if headers.get("x-vault-wrap-ttl"):
            try:
                wrap_ttl = parse_duration(headers["x-vault-wrap-ttl"], "X-Vault-Wrap-TTL")
            except VaultError as exc:
                raise VaultError(400, "error parsing X-Vault-Wrap-TTL header: "
                                      + exc.errors[0]) from exc
        content_type = headers.get("content-type", JSON)
        data = {**params, **parse_body(body, content_type)}
        token = headers.get("x-vault-token", "")
        auth = headers.get("authorization", "")
        if not token and auth[:7].lower() == "bearer ":
            token = auth[7:].strip()
        return Request(method=method, op=op, path=path, data=data, token=token,
                       namespace=headers.get("x-vault-namespace", ""),
                       content_type=content_type, wrap_ttl=wrap_ttl)
