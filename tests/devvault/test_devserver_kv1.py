"""KV version 1 (vault-http-api.md §3)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import hvac
import pytest
import requests
from hvac import exceptions

from devvault import DevVault

Raw = Callable[..., requests.Response]


@pytest.fixture
def v1() -> Iterator[hvac.Client]:
    with DevVault(kv_v1_mount="kv").start() as server:
        c = hvac.Client(url=server.address, token=server.root_token)
        yield c
        c.adapter.close()


def test_read_without_ttl_reports_default_lease(v1: hvac.Client) -> None:
    """§3 no ttl key: lease_duration is the 768h default (2764800), no lease id, not renewable."""
    v1.secrets.kv.v1.create_or_update_secret(path="app", secret={"k": "v"}, mount_point="kv")
    got = v1.secrets.kv.v1.read_secret(path="app", mount_point="kv")
    assert got["data"] == {"k": "v"}
    assert (got["lease_duration"], got["lease_id"], got["renewable"]) == (2764800, "", False)


def test_read_with_ttl_reports_it_and_keeps_the_key(v1: hvac.Client) -> None:
    """§3 a ttl key sets lease_duration in seconds and stays inside data."""
    v1.secrets.kv.v1.create_or_update_secret(path="app", secret={"k": "v", "ttl": "1h"},
                                             mount_point="kv")
    got = v1.secrets.kv.v1.read_secret(path="app", mount_point="kv")
    assert got["lease_duration"] == 3600
    assert got["data"] == {"k": "v", "ttl": "1h"}


def test_write_is_204(v1: hvac.Client) -> None:
    """§3 a write returns 204."""
    resp = v1.secrets.kv.v1.create_or_update_secret(path="app", secret={"k": "v"},
                                                    mount_point="kv")
    assert resp.status_code == 204


def test_empty_write_is_400_missing_data_fields(v1: hvac.Client) -> None:
    """§3 an empty body is 400 "missing data fields"."""
    with pytest.raises(exceptions.InvalidRequest) as info:
        v1.adapter.post("/v1/kv/app", json={})
    assert info.value.errors == ["missing data fields"]


def test_absent_path_is_404(v1: hvac.Client) -> None:
    """§3 an absent path is 404 (InvalidPath)."""
    with pytest.raises(exceptions.InvalidPath):
        v1.secrets.kv.v1.read_secret(path="absent", mount_point="kv")


def test_delete_is_204_and_idempotent(v1: hvac.Client) -> None:
    """§3 DELETE returns 204, also for an absent path."""
    v1.secrets.kv.v1.create_or_update_secret(path="app", secret={"k": "v"}, mount_point="kv")
    assert v1.secrets.kv.v1.delete_secret(path="app", mount_point="kv").status_code == 204
    assert v1.secrets.kv.v1.delete_secret(path="app", mount_point="kv").status_code == 204
    with pytest.raises(exceptions.InvalidPath):
        v1.secrets.kv.v1.read_secret(path="app", mount_point="kv")


def test_list_keys_with_zero_lease(v1: hvac.Client) -> None:
    """§3 LIST returns keys (folders with /) and lease_duration 0."""
    for path in ("app/db", "app/cfg/x", "top"):
        v1.secrets.kv.v1.create_or_update_secret(path=path, secret={"k": "v"}, mount_point="kv")
    got = v1.secrets.kv.v1.list_secrets(path="app", mount_point="kv")
    assert got["data"]["keys"] == ["cfg/", "db"]
    assert got["lease_duration"] == 0
    root = v1.secrets.kv.v1.list_secrets(path="", mount_point="kv")
    assert root["data"]["keys"] == ["app/", "top"]


def test_update_overwrites_whole_secret(v1: hvac.Client) -> None:
    """§3 hvac GETs then PUTs an existing key; the new body replaces the old one."""
    v1.secrets.kv.v1.create_or_update_secret(path="app", secret={"a": "1"}, mount_point="kv")
    v1.secrets.kv.v1.create_or_update_secret(path="app", secret={"b": "2"}, mount_point="kv")
    assert v1.secrets.kv.v1.read_secret(path="app", mount_point="kv")["data"] == {"b": "2"}


def test_enabled_v1_mount_reports_tuned_default_ttl(client: hvac.Client) -> None:
    """§3 a v1 mount tuned with default_lease_ttl reports that value instead of 768h."""
    client.sys.enable_secrets_engine("kv", path="short", config={"default_lease_ttl": "10m"})
    client.secrets.kv.v1.create_or_update_secret(path="x", secret={"k": "v"},
                                                 mount_point="short")
    got = client.secrets.kv.v1.read_secret(path="x", mount_point="short")
    assert got["lease_duration"] == 600
