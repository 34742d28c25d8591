"""The probe and metrics server, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import http.client
import json
import logging
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from injector.errors import ConfigError
from injector.health import HealthServer, parse_address
from injector.metrics import Counter, Registry


@dataclass
class Checks:
    """Mutable probe answers the tests flip."""

    live: tuple[bool, str] = (True, "")
    ready: tuple[bool, str] = (False, "waiting for first render")


@dataclass
class Served:
    server: HealthServer
    checks: Checks
    registry: Registry

    def request(self, path: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=5)
        try:
            conn.request(method, path)
            response = conn.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            conn.close()


@pytest.fixture
def served() -> Iterator[Served]:
    """A started HealthServer on a free port of 127.0.0.1."""
    checks, registry = Checks(), Registry()
    server = HealthServer("127.0.0.1:0", live=lambda: checks.live, ready=lambda: checks.ready, registry=registry)
    server.start()
    try:
        yield Served(server, checks, registry)
    finally:
        server.stop()


class TestProbes:
    def test_healthz_ok(self, served: Served) -> None:
        """/healthz answers 200 ok when live."""
        assert served.request("/healthz")[::2] == (200, b"ok\n")

    def test_healthz_503_with_reason(self, served: Served) -> None:
        """/healthz answers 503 with the reason when not live."""
        served.checks.live = (False, "refresh loop stuck for 10m")
        assert served.request("/healthz")[::2] == (503, b"refresh loop stuck for 10m\n")

    def test_readyz_503_with_reason(self, served: Served) -> None:
        """/readyz answers 503 with the reason text until ready."""
        status, headers, body = served.request("/readyz")
        assert (status, body) == (503, b"waiting for first render\n")
        assert headers["Content-Type"] == "text/plain; charset=utf-8"

    def test_readyz_stale_reason(self, served: Served) -> None:
        """A stale reason is passed through verbatim."""
        served.checks.ready = (False, "stale: vault:secret/app last refreshed 16m ago (max_stale 15m)")
        assert served.request("/readyz")[::2] == (
            503,
            b"stale: vault:secret/app last refreshed 16m ago (max_stale 15m)\n",
        )

    def test_readyz_ok(self, served: Served) -> None:
        """/readyz answers 200 ok once ready; a query string is ignored."""
        served.checks.ready = (True, "")
        assert served.request("/readyz?verbose=1")[::2] == (200, b"ok\n")

    def test_failing_check_is_503(self, served: Served) -> None:
        """A check that raises makes the probe answer 503, not crash the server."""

        def broken() -> tuple[bool, str]:
            raise RuntimeError("bug")

        served.server.ready = broken
        status, _, body = served.request("/readyz")
        assert (status, body) == (503, b"readiness check failed: RuntimeError\n")
        assert served.request("/healthz")[0] == 200

    def test_head_has_headers_and_no_body(self, served: Served) -> None:
        """HEAD answers the probe's status with Content-Length and no body."""
        status, headers, body = served.request("/healthz", method="HEAD")
        assert (status, headers["Content-Length"], body) == (200, "3", b"")
        assert served.request("/readyz", method="HEAD")[0] == 503

    def test_unknown_path_is_404(self, served: Served) -> None:
        """Any other path answers 404."""
        assert served.request("/secrets")[0] == 404


class TestMetricsEndpoint:
    def test_metrics_content_type_and_body(self, served: Served) -> None:
        """/metrics answers the registry's text with the 0.0.4 content type."""
        Counter("demo_total", "Demo.", registry=served.registry).inc()
        status, headers, body = served.request("/metrics")
        assert status == 200
        assert headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        assert body.decode() == served.registry.render()
        assert b"demo_total 1.0\n" in body


def assert_one_connection_serves(port: int, paths: list[str]) -> None:
    """Sends each path on one HTTPConnection and asserts every response came on the same socket
    (http.client would silently reconnect after a server's close)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.connect()
        first = conn.sock
        local = first.getsockname()
        for path in paths:
            conn.request("GET", path)
            conn.getresponse().read()
            assert conn.sock is first, f"the server closed the connection after {path}"
            assert conn.sock.getsockname() == local, f"a new connection served {path}"
    finally:
        conn.close()


class _ClosingHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "3")
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(b"ok\n")

    def log_message(self, format: str, *args: object) -> None:
        pass


class closing_server:
    """A server on 127.0.0.1 that answers and closes every connection (HTTP/1.1, Connection: close)."""

    def __enter__(self) -> int:
        self.server = HTTPServer(("127.0.0.1", 0), _ClosingHandler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return int(self.server.server_address[1])

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def idle_connection(port: int) -> socket.socket:
    """A connection that sends nothing: it holds a server thread until the idle timeout."""
    return socket.create_connection(("127.0.0.1", port), timeout=5)


class TestConcurrency:
    def test_connections_beyond_the_bound_get_503(self) -> None:
        """With 2 connections held open, a third gets 503 busy and no third serving thread starts."""
        server = HealthServer(
            "127.0.0.1:0", live=lambda: (True, ""), ready=lambda: (True, ""), registry=Registry(), max_connections=2
        )
        server.start()
        held = [idle_connection(server.port) for _ in range(2)]
        try:
            deadline = time.monotonic() + 5
            while sum(t.name == "injector-health-conn" for t in threading.enumerate()) < 2:
                assert time.monotonic() < deadline, "the held connections were never served"
                time.sleep(0.01)
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
            conn.request("GET", "/healthz")
            response = conn.getresponse()
            assert (response.status, response.read()) == (503, b"busy: too many connections to the health server\n")
            conn.close()
            assert sum(t.name == "injector-health-conn" for t in threading.enumerate()) == 2
        finally:
            for sock in held:
                sock.close()
            server.stop()

    def test_a_freed_slot_serves_again(self) -> None:
        """Once a held connection closes, the next request is served normally."""
        server = HealthServer(
            "127.0.0.1:0", live=lambda: (True, ""), ready=lambda: (True, ""), registry=Registry(), max_connections=1
        )
        server.start()
        try:
            held = idle_connection(server.port)
            held.close()
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
            conn.request("GET", "/healthz")
            assert conn.getresponse().status == 200
            conn.close()
        finally:
            server.stop()


class TestErrors:
    def test_a_failing_check_is_logged_in_one_line(self, served: Served, caplog: pytest.LogCaptureFixture) -> None:
        """A check that raises is logged as one ERROR line without a traceback."""

        def broken() -> tuple[bool, str]:
            raise RuntimeError("bug")

        served.server.ready = broken
        with caplog.at_level(logging.ERROR, logger="injector.health"):
            assert served.request("/readyz")[0] == 503
        assert [(r.getMessage(), r.exc_info) for r in caplog.records] == [
            ("the readiness check failed: RuntimeError: bug", None)
        ]

    def test_a_client_reset_prints_no_traceback(
        self, served: Served, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
    ) -> None:
        """A client that resets the connection before its answer costs one DEBUG line, no traceback."""
        reset, answered = threading.Event(), threading.Event()

        def slow() -> tuple[bool, str]:
            reset.wait(5)
            answered.set()
            return True, ""

        served.server.live = slow
        with caplog.at_level(logging.DEBUG, logger="injector.health"):
            sock = socket.create_connection(("127.0.0.1", served.server.port), timeout=5)
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()  # linger 0: an RST, so the server's write fails
            reset.set()
            deadline = time.monotonic() + 5
            while not any("ended" in r.getMessage() for r in caplog.records):
                assert time.monotonic() < deadline, "the reset connection was never logged"
                time.sleep(0.01)
        assert answered.is_set()
        assert "Traceback" not in capfd.readouterr().err
        assert all(r.exc_info is None for r in caplog.records)
        assert served.request("/healthz")[0] == 200


class TestServer:
    def test_port_zero_picks_a_free_port(self, served: Served) -> None:
        """With port 0 the actual port is reported after start."""
        assert served.server.port > 0

    def test_keep_alive_serves_several_requests(self, served: Served) -> None:
        """One HTTP/1.1 connection serves several requests (probes and scrapes reuse connections)."""
        assert_one_connection_serves(served.server.port, ["/healthz", "/readyz", "/metrics"])

    def test_keep_alive_check_fails_against_a_closing_server(self) -> None:
        """The keep-alive check fails against a server that closes the connection after each response."""
        with closing_server() as port, pytest.raises(AssertionError, match="connection"):
            assert_one_connection_serves(port, ["/a", "/b"])

    def test_address_in_use_is_a_config_error(self, served: Served) -> None:
        """A second server on a taken port raises ConfigError naming the address."""
        other = HealthServer(
            f"127.0.0.1:{served.server.port}", live=lambda: (True, ""), ready=lambda: (True, ""), registry=Registry()
        )
        with pytest.raises(ConfigError, match=r"health\.address: cannot listen on 127\.0\.0\.1"):
            other.start()

    def test_stop_closes_the_socket(self) -> None:
        """After stop(), nothing listens on the port."""
        server = HealthServer("127.0.0.1:0", live=lambda: (True, ""), ready=lambda: (True, ""), registry=Registry())
        server.start()
        port = server.port
        server.stop()
        with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), timeout=2):
            pass

    def test_start_asks_no_resolver(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Binding looks up no name for the address (``HTTPServer`` would ask the resolver for the
        address's name, and wait its whole timeout where DNS is slow): the server starts and answers
        with every lookup failing."""
        asked: list[str] = []

        def no_resolver(name: str = "") -> str:
            asked.append(name)
            raise OSError("no resolver here")

        for lookup in ("getfqdn", "gethostbyaddr"):
            monkeypatch.setattr(socket, lookup, no_resolver)
        server = HealthServer("127.0.0.1:0", live=lambda: (True, ""), ready=lambda: (True, ""), registry=Registry())
        server.start()
        try:
            assert Served(server, Checks(), Registry()).request("/healthz")[::2] == (200, b"ok\n")
        finally:
            server.stop()
        assert asked == []

    @pytest.mark.parametrize(
        ("address", "expected"),
        [("0.0.0.0:8099", ("0.0.0.0", 8099)), (":8099", ("0.0.0.0", 8099)), ("[::1]:9000", ("::1", 9000))],
        ids=["ipv4", "empty-host", "ipv6"],
    )
    def test_parse_address(self, address: str, expected: tuple[str, int]) -> None:
        """HOST:PORT, :PORT and [IPv6]:PORT parse; an empty host means all interfaces."""
        assert parse_address(address) == expected

    def test_bad_address_is_a_config_error(self) -> None:
        """An address without a numeric port is refused."""
        with pytest.raises(ConfigError, match="expected HOST:PORT"):
            parse_address("localhost")


def test_probes_load_no_html_entity_table_and_an_error_page_still_escapes() -> None:
    """In a fresh process the probes are served without the ``html`` package's ``__init__`` (its
    table of named character references); the first error page (a request line whose version the
    server echoes) runs it and escapes that text as before."""
    code = """
import http.client, json, socket, sys
from injector.health import HealthServer
from injector.metrics import Registry
server = HealthServer("127.0.0.1:0", live=lambda: (True, ""), ready=lambda: (True, ""), registry=Registry())
server.start()
def ask(path):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("GET", path)
    status = conn.getresponse().status
    conn.close()
    return status
probes = [ask(path) for path in ("/healthz", "/readyz", "/metrics")]
before = "html.entities" in sys.modules
with socket.create_connection(("127.0.0.1", server.port), timeout=10) as conn:
    conn.sendall(b"GET / HTTP/<b>&\\r\\n\\r\\n")
    answer = b""
    while chunk := conn.recv(65536):
        answer += chunk
server.stop()
print(json.dumps({"probes": probes, "before": before, "answer": answer.decode(),
                  "after": "html.entities" in sys.modules}))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["probes"] == [200, 200, 200]
    assert result["before"] is False
    assert "Error code: 400" in result["answer"]  # an HTTP/0.9 answer: the page, without a status line
    assert "HTTP/&lt;b&gt;&amp;" in result["answer"]
    assert "<b>" not in result["answer"]
    assert result["after"] is True
