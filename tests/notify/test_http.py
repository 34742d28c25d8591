"""The HTTP notifier against real servers on 127.0.0.1: statuses, redirects, and one deadline per attempt."""

from __future__ import annotations

import base64
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from injector.config.model import HttpNotify
from injector.errors import NotifyError
from injector.notify.http import HttpNotifier
from tests.fixtures.sidecar import free_port
from tests.notify.support import AppServer

#: How long a trickling server keeps trickling: far beyond any deadline the tests set.
TRICKLE_FOR = 30.0


class Trickler:
    """A raw TCP server on 127.0.0.1 that reads a request, then sends ``answer`` one byte every
    ``gap`` seconds (after ``prefix`` at once), until the client goes or TRICKLE_FOR passes."""

    def __init__(self, answer: bytes, *, prefix: bytes = b"", gap: float = 0.05, tls: ssl.SSLContext | None = None):
        self.answer, self.prefix, self.gap, self.tls = answer, prefix, gap, tls
        self.stop = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/-/reload"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                request += chunk
            deadline = time.monotonic() + TRICKLE_FOR
            try:
                conn.sendall(self.prefix)
                for byte in self.answer:
                    if self.stop.wait(self.gap) or time.monotonic() > deadline:
                        return
                    conn.sendall(bytes([byte]))
            except OSError:
                return

    def close(self) -> None:
        self.stop.set()
        self.listener.close()


@pytest.fixture
def trickler() -> Iterator[list[Trickler]]:
    """Trickling servers the test starts; all stopped afterwards."""
    started: list[Trickler] = []
    yield started
    for server in started:
        server.close()


HEAD = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-Padding: " + b"p" * 2000 + b"\r\n\r\n"


class TestAnswers:
    def test_2xx_is_success_and_sends_no_body(self, http_app: AppServer) -> None:
        """A 2xx answer succeeds; the request has the method and headers and an empty body."""
        HttpNotifier(HttpNotify(url=http_app.url, headers={"X-Reload": "yes"})).notify()
        [(method, path, headers, body)] = http_app.requests
        assert (method, path, body) == ("POST", "/-/reload", b"")
        assert headers["X-Reload"] == "yes"

    def test_query_string_is_sent(self, http_app: AppServer) -> None:
        """The URL's query string reaches the app."""
        HttpNotifier(HttpNotify(url=http_app.url + "?token=abc", method="GET")).notify()
        assert [r[:2] for r in http_app.requests] == [("GET", "/-/reload?token=abc")]

    def test_credentials_in_the_url_become_basic_auth(self, http_app: AppServer) -> None:
        """user:password@ in the URL is sent as a Basic Authorization header."""
        url = http_app.url.replace("http://", "http://reload:p%40ss@")
        HttpNotifier(HttpNotify(url=url)).notify()
        [(_, _, headers, _)] = http_app.requests
        assert headers["Authorization"] == "Basic " + base64.b64encode(b"reload:p@ss").decode()

    def test_500_raises_with_the_status(self, http_app: AppServer) -> None:
        """A 500 answer raises NotifyError with the status and the URL."""
        http_app.statuses = [500]
        with pytest.raises(NotifyError, match=r"http POST http://127\.0\.0\.1:\d+/-/reload: the app answered 500"):
            HttpNotifier(HttpNotify(url=http_app.url)).notify()

    def test_error_body_is_cut_to_200_characters(self, http_app: AppServer) -> None:
        """At most ~200 characters of an error response's body reach the message."""
        http_app.statuses, http_app.body = [503], b"x" * 5000
        with pytest.raises(NotifyError) as info:
            HttpNotifier(HttpNotify(url=http_app.url)).notify()
        assert "x" * 200 in str(info.value)
        assert "x" * 201 not in str(info.value)

    def test_redirect_is_not_followed(self, http_app: AppServer) -> None:
        """A 3xx answer is a failure, not followed (that would turn the POST into a GET)."""
        http_app.statuses = [302]
        with pytest.raises(NotifyError, match=r"answered 302 .*redirects are not followed"):
            HttpNotifier(HttpNotify(url=http_app.url)).notify()
        assert len(http_app.requests) == 1

    def test_connection_refused_raises(self) -> None:
        """Nobody listening raises NotifyError saying the request failed."""
        url = f"http://127.0.0.1:{free_port()}/-/reload"
        with pytest.raises(NotifyError, match=r"request failed: .*refused"):
            HttpNotifier(HttpNotify(url=url, timeout=2)).notify()

    def test_describe_hides_credentials_and_query(self) -> None:
        """The label drops user:password@ and the query string, where tokens live."""
        notifier = HttpNotifier(HttpNotify(url="http://u:pw@127.0.0.1:8080/-/reload?token=abc", method="PUT"))
        assert notifier.describe() == "http PUT http://127.0.0.1:8080/-/reload"


class TestDeadline:
    def test_a_trickled_status_line_and_headers_end_at_the_deadline(self, trickler: list[Trickler]) -> None:
        """Headers trickled a byte every 50 ms (each read well within the timeout) still end the attempt at 0.5 s."""
        trickler.append(server := Trickler(HEAD))
        started = time.monotonic()
        with pytest.raises(NotifyError, match=r"no complete answer within 0\.5s"):
            HttpNotifier(HttpNotify(url=server.url, timeout=0.5)).notify()
        assert time.monotonic() - started < 5  # a per-read timeout would wait TRICKLE_FOR (30 s)

    def test_a_trickled_error_body_keeps_the_status(self, trickler: list[Trickler]) -> None:
        """A 500 whose body trickles is reported as the 500 at the deadline, without the body."""
        head = b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 5000\r\n\r\n"
        trickler.append(server := Trickler(b"y" * 5000, prefix=head))
        started = time.monotonic()
        with pytest.raises(NotifyError, match=r"the app answered 500 Internal Server Error; expected a 2xx"):
            HttpNotifier(HttpNotify(url=server.url, timeout=0.5)).notify()
        assert time.monotonic() - started < 5

    def test_the_deadline_is_per_attempt(self, trickler: list[Trickler], http_app: AppServer) -> None:
        """A notifier that timed out once succeeds on its next attempt: each attempt has a fresh deadline."""
        trickler.append(server := Trickler(HEAD, gap=0.001))
        notifier = HttpNotifier(HttpNotify(url=server.url, timeout=0.3))
        with pytest.raises(NotifyError, match="no complete answer"):
            notifier.notify()
        server.gap = 0  # now it answers at once
        notifier.notify()

    def test_a_silent_tls_handshake_ends_at_the_deadline(self) -> None:
        """An https endpoint that accepts and never answers the TLS handshake ends the attempt at the deadline."""
        listener = socket.create_server(("127.0.0.1", 0))
        try:
            url = f"https://127.0.0.1:{listener.getsockname()[1]}/-/reload"
            started = time.monotonic()
            with pytest.raises(NotifyError, match=r"no complete answer within 0\.5s"):
                HttpNotifier(HttpNotify(url=url, timeout=0.5)).notify()
            assert time.monotonic() - started < 5
        finally:
            listener.close()

    @pytest.mark.skipif(not shutil.which("openssl"), reason="needs openssl to make a certificate")
    def test_https_verifies_the_certificate(self, tmp_path: Path) -> None:
        """An https endpoint with a certificate nobody trusts fails with the TLS error."""
        key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1"],
            check=True, capture_output=True,
        )  # fmt: skip
        server = AppServer()
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        try:
            url = server.url.replace("http://", "https://")
            with pytest.raises(NotifyError, match=r"request failed: .*CERTIFICATE_VERIFY_FAILED"):
                HttpNotifier(HttpNotify(url=url, timeout=2)).notify()
        finally:
            server.shutdown()
            server.server_close()
            thread.join(5)
