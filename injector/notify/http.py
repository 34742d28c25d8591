"""The HTTP notifier: one request to the app's reload endpoint, any 2xx is success.

``timeout`` bounds the whole attempt — connect, TLS handshake, sending the request, the status line
and headers, and the part of an error body we read — not each socket operation: an endpoint that
trickles one byte a second cannot hold a notifier for longer. (A socket timeout alone restarts at
every byte received.) Every socket operation gets what is left of the deadline as its timeout; the
host name lookup is bounded by the resolver's own timeout (use an IP address for an app in the pod).
"""

from __future__ import annotations

import base64
import http.client
import io
import logging
import socket
import ssl
import time
from urllib.parse import unquote, urlsplit, urlunsplit

from injector.config.model import HttpNotify
from injector.errors import NotifyError

logger = logging.getLogger(__name__)

#: How much of a failed HTTP response body goes into the error message.
MAX_BODY_CHARS = 200


def _safe_url(url: str) -> str:
    """Returns ``url`` without credentials, query or fragment (tokens live there), for messages."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:  # a garbled port: show none rather than fail while reporting
        port = None
    netloc = host + (f":{port}" if port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class _Expired(TimeoutError):
    """The attempt's deadline passed."""


class _DeadlineSocket:
    """A connected socket whose every operation gets the time left until one deadline.

    http.client uses ``sendall``, ``makefile("rb")`` and ``close``; CPython bounds a whole
    ``sendall`` by the socket timeout, and each read here re-arms it with what is left.
    """

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self._sock = sock
        self._deadline = deadline

    def arm(self) -> None:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise _Expired
        self._sock.settimeout(left)

    def sendall(self, data: bytes | bytearray | memoryview) -> None:
        self.arm()
        self._sock.sendall(data)

    def recv_into(self, buffer: bytearray | memoryview) -> int:
        self.arm()
        return self._sock.recv_into(buffer)

    def makefile(self, mode: str) -> io.BufferedReader:
        if mode != "rb":
            raise ValueError(f"unsupported mode {mode!r}")
        return io.BufferedReader(_DeadlineReader(self))

    def close(self) -> None:
        self._sock.close()


class _DeadlineReader(io.RawIOBase):
    def __init__(self, sock: _DeadlineSocket) -> None:
        self._sock = sock

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        return self._sock.recv_into(buffer)


def _connect(host: str, port: int, deadline: float, tls: ssl.SSLContext | None) -> _DeadlineSocket:
    left = deadline - time.monotonic()
    sock = socket.create_connection((host, port), timeout=max(left, 0.001))
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls is not None:
            # wrap_socket's handshake is bounded as a whole by the socket timeout.
            sock.settimeout(max(deadline - time.monotonic(), 0.001))
            sock = tls.wrap_socket(sock, server_hostname=host)
        wrapped = _DeadlineSocket(sock, deadline)
        wrapped.arm()
    except BaseException:
        sock.close()
        raise
    return wrapped


class _Connection(http.client.HTTPConnection):
    """An HTTPConnection whose socket shares one deadline (see the module docstring)."""

    def __init__(self, host: str, port: int, *, deadline: float, tls: ssl.SSLContext | None) -> None:
        super().__init__(host, port)
        self._deadline = deadline
        self._tls = tls

    def connect(self) -> None:
        self.sock = _connect(self.host, self.port, self._deadline, self._tls)


class HttpNotifier:
    """Sends one HTTP request (POST by default, no body); any 2xx status is success.

    Redirects are not followed and proxy environment variables are ignored: the target is the app
    in the same pod. Headers are sent but never logged (they may hold a token).
    """

    def __init__(self, config: HttpNotify) -> None:
        parts = urlsplit(config.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise NotifyError(f"http {config.method} {_safe_url(config.url)}: expected an http:// or https:// URL")
        self._config = config
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._tls = ssl.create_default_context() if parts.scheme == "https" else None
        self._headers = dict(config.headers)
        if parts.username is not None and not any(k.lower() == "authorization" for k in self._headers):
            pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
            self._headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
        self._label = f"http {config.method} {_safe_url(config.url)}"

    def describe(self) -> str:
        return self._label

    def notify(self) -> None:
        timeout = self._config.timeout
        deadline = time.monotonic() + timeout
        conn = _Connection(self._host, self._port, deadline=deadline, tls=self._tls)
        try:
            conn.request(self._config.method, self._target, headers=self._headers)
            response = conn.getresponse()
            status, reason = response.status, response.reason
            body = "" if 200 <= status < 300 else _read_some(response)
        except TimeoutError:  # _Expired, or a socket operation that used up the time left
            raise NotifyError(
                f"{self.describe()}: no complete answer within {timeout:g}s; is the app up and the URL right?"
            ) from None
        except (http.client.HTTPException, OSError) as exc:
            raise NotifyError(f"{self.describe()}: request failed: {exc}; is the app listening there?") from None
        finally:
            conn.close()
        if not 200 <= status < 300:
            hint = " (redirects are not followed)" if 300 <= status < 400 else ""
            raise NotifyError(
                f"{self.describe()}: the app answered {status} {reason}"
                + (f": {body}" if body else "")
                + f"{hint}; expected a 2xx status: check the reload endpoint, method and headers"
            )
        logger.info("%s answered %d", self.describe(), status)


def _read_some(response: http.client.HTTPResponse) -> str:
    """Returns the start of an error body, one line, at most MAX_BODY_CHARS characters ("" if it
    does not arrive before the deadline: the status is what matters)."""
    try:
        data = response.read(MAX_BODY_CHARS * 4)
    except (http.client.HTTPException, OSError):
        return ""
    text = " ".join(data.decode("utf-8", errors="replace").split())
    return text[:MAX_BODY_CHARS] + ("…" if len(text) > MAX_BODY_CHARS else "")
