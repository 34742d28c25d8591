"""The probe and metrics server, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import http.client
import socket
from collections.abc import Iterator
from dataclasses import dataclass

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


class TestServer:
    def test_port_zero_picks_a_free_port(self, served: Served) -> None:
        """With port 0 the actual port is reported after start."""
        assert served.server.port > 0

    def test_keep_alive_serves_several_requests(self, served: Served) -> None:
        """One HTTP/1.1 connection serves several requests (probes reuse connections)."""
        conn = http.client.HTTPConnection("127.0.0.1", served.server.port, timeout=5)
        try:
            for path in ("/healthz", "/readyz", "/metrics"):
                conn.request("GET", path)
                conn.getresponse().read()
        finally:
            conn.close()

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
