"""Test knobs: outage, latency, injected errors, request counting, stop (DevVault API)."""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor

import hvac
import pytest
import requests
from hvac import exceptions

from devvault import DevVault


def read(client: hvac.Client, path: str = "app") -> object:
    return client.secrets.kv.v2.read_secret_version(path=path, raise_on_deleted_version=True)


@pytest.fixture
def seeded(client: hvac.Client) -> hvac.Client:
    client.secrets.kv.v2.create_or_update_secret(path="app", secret={"k": "v"})
    client.secrets.kv.v2.create_or_update_secret(path="other", secret={"k": "v"})
    return client


def test_outage_raises_connection_error(vault: DevVault, seeded: hvac.Client) -> None:
    """set_outage(True): hvac raises requests.ConnectionError; off again, requests work."""
    vault.set_outage(True)
    with pytest.raises(requests.exceptions.ConnectionError):
        read(seeded)
    vault.set_outage(False)
    assert read(seeded)


def test_outage_on_a_fresh_connection(vault: DevVault) -> None:
    """set_outage(True) before any request: the first request fails to connect usefully."""
    vault.set_outage(True)
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(vault.address + "/v1/sys/health", timeout=5)


def test_latency_is_added(vault: DevVault, seeded: hvac.Client) -> None:
    """set_latency adds the delay to every response."""
    vault.set_latency(0.15)
    start = time.monotonic()
    read(seeded)
    assert time.monotonic() - start >= 0.15
    vault.set_latency(0)
    start = time.monotonic()
    read(seeded)
    assert time.monotonic() - start < 0.15


def test_latency_overlaps_across_concurrent_requests(vault: DevVault) -> None:
    """Latency is slept outside the lock: 8 concurrent requests take about one delay."""
    vault.set_latency(0.2)

    def one(_: int) -> int:
        return requests.get(vault.address + "/v1/sys/health", timeout=5).status_code

    start = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(one, range(8))) == [200] * 8
    assert time.monotonic() - start < 0.2 * 4


def test_error_rate_one_always_fails(vault: DevVault, seeded: hvac.Client) -> None:
    """set_error_rate(1.0) fails every request with the status and a Vault error body."""
    vault.set_error_rate(1.0, status=500)
    with pytest.raises(exceptions.InternalServerError):
        read(seeded)
    vault.set_error_rate(0.0)
    assert read(seeded)


def test_error_rate_limited_to_paths(vault: DevVault, seeded: hvac.Client) -> None:
    """paths= restricts injected failures to matching paths (prefix or regex)."""
    vault.set_error_rate(1.0, status=502, paths="secret/data/app")
    with pytest.raises(exceptions.BadGateway):
        read(seeded, "app")
    assert read(seeded, "other")


def test_error_rate_429_uses_quota_body(vault: DevVault, seeded: hvac.Client) -> None:
    """§1.5 a 429 carries the rate-limit quota message (hvac RateLimitExceeded)."""
    vault.set_error_rate(1.0, status=429)
    with pytest.raises(exceptions.RateLimitExceeded) as info:
        read(seeded)
    assert info.value.errors == ['request path "secret/data/app": rate limit quota exceeded']


def test_error_rate_503_looks_sealed(vault: DevVault, seeded: hvac.Client) -> None:
    """An injected 503 is the sealed body, so hvac raises VaultDown."""
    vault.set_error_rate(1.0, status=503)
    with pytest.raises(exceptions.VaultDown):
        read(seeded)


def test_partial_error_rate_fails_some(vault: DevVault) -> None:
    """A rate of 0.5 fails some requests and lets others through."""
    vault.set_error_rate(0.5, status=500)
    with requests.Session() as session:
        codes = [session.get(vault.address + "/v1/sys/health", timeout=5).status_code
                 for _ in range(200)]
    assert 40 < codes.count(500) < 160
    assert codes.count(500) + codes.count(200) == 200


def test_request_count_by_prefix(vault: DevVault, seeded: hvac.Client) -> None:
    """request_count counts served requests by path prefix, failures included."""
    vault.reset_counts()
    read(seeded)
    read(seeded)
    with pytest.raises(exceptions.InvalidPath):
        read(seeded, "absent")
    assert vault.request_count("secret/data/") == 3
    assert vault.request_count("secret/data/app") == 2
    assert vault.request_count() == 3


def test_request_log_keeps_method_and_path(vault: DevVault, seeded: hvac.Client) -> None:
    """request_log lists (method, path) in order; reset_counts clears it."""
    vault.reset_counts()
    seeded.secrets.kv.v2.list_secrets(path="")
    read(seeded)
    assert vault.request_log == [("LIST", "/v1/secret/metadata"),
                                 ("GET", "/v1/secret/data/app")]
    vault.reset_counts()
    assert vault.request_log == [] and vault.request_count() == 0


def test_stop_closes_keep_alive_connections(vault: DevVault, seeded: hvac.Client) -> None:
    """stop() ends open keep-alive connections: the next request is a ConnectionError."""
    read(seeded)
    vault.stop()
    with pytest.raises(requests.exceptions.ConnectionError):
        read(seeded)


def test_non_loopback_host_is_refused() -> None:
    """The dev server listens on loopback only."""
    with pytest.raises(ValueError, match="loopback"):
        DevVault(host="0.0.0.0")


def test_context_manager_starts_and_stops() -> None:
    """`with DevVault() as v` starts the server and stops it on exit; port 0 picks a port."""
    with DevVault() as server:
        assert server.port > 0 and server.address == f"http://127.0.0.1:{server.port}"
        assert requests.get(server.address + "/v1/sys/health", timeout=5).status_code == 200
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(server.address + "/v1/sys/health", timeout=5)



def test_bad_error_rate_pattern_changes_nothing(vault: DevVault, client: hvac.Client) -> None:
    """A set_error_rate call with a bad pattern raises and leaves every request succeeding."""
    client.secrets.kv.v2.create_or_update_secret(path="app", secret={"k": "v"})
    with pytest.raises(re.error):
        vault.set_error_rate(1.0, 500, paths="(")
    assert read(client)["data"]["data"] == {"k": "v"}  # type: ignore[index]
