"""Mounts and KV version detection (vault-http-api.md §7, §1.2)."""

from __future__ import annotations

from collections.abc import Callable

import hvac
import pytest
import requests
from hvac import exceptions

from devvault import DevVault

Raw = Callable[..., requests.Response]


def test_dev_defaults_are_mounted(client: hvac.Client) -> None:
    """secret/ is KV v2 at start, plus the dev pki/ and database/ mounts."""
    mounts = client.sys.list_mounted_secrets_engines()["data"]
    assert mounts["secret/"]["type"] == "kv"
    assert mounts["secret/"]["options"] == {"version": "2"}
    assert mounts["pki/"]["type"] == "pki"
    assert mounts["database/"]["type"] == "database"


def test_mount_list_copies_data_to_top_level(raw: Raw) -> None:
    """§1.2 sys/mounts copies data keys to the top level of the body."""
    body = raw("GET", "/v1/sys/mounts").json()
    assert body["secret/"] == body["data"]["secret/"]
    assert body["mount_type"] == "system"


def test_enable_kv_v2_reports_version_as_string(client: hvac.Client) -> None:
    """§7 options version comes back as the string "2" even when enabled with int 2."""
    resp = client.sys.enable_secrets_engine("kv", path="kvv2", options={"version": 2})
    assert resp.status_code == 204
    assert client.sys.retrieve_mount_option("kvv2", "version") == "2"
    client.secrets.kv.v2.create_or_update_secret(path="a", secret={"k": "v"},
                                                 mount_point="kvv2")


def test_enable_kv_v2_type_alias(client: hvac.Client) -> None:
    """§7 type kv-v2 mounts KV with options version "2"."""
    client.sys.enable_secrets_engine("kv-v2", path="other")
    mount = client.sys.list_mounted_secrets_engines()["data"]["other/"]
    assert (mount["type"], mount["options"]) == ("kv", {"version": "2"})


def test_disable_mount_is_204(client: hvac.Client) -> None:
    """§7 DELETE sys/mounts/{path} is 204 and the mount is gone."""
    client.sys.enable_secrets_engine("kv", path="gone")
    assert client.sys.disable_secrets_engine("gone").status_code == 204
    assert "gone/" not in client.sys.list_mounted_secrets_engines()["data"]


def test_duplicate_mount_path_is_400(client: hvac.Client) -> None:
    """§7 enabling an engine at a used path is 400 "path is already in use"."""
    with pytest.raises(exceptions.InvalidRequest, match="path is already in use at secret/"):
        client.sys.enable_secrets_engine("kv", path="secret")


def test_unknown_engine_type_is_400(client: hvac.Client) -> None:
    """§7 an engine type the server does not have is 400 "plugin not found in the catalog"."""
    with pytest.raises(exceptions.InvalidRequest, match="plugin not found in the catalog: aws"):
        client.sys.enable_secrets_engine("aws", path="aws")


def test_preflight_resolves_deeper_path_to_its_mount(raw: Raw) -> None:
    """§7 sys/internal/ui/mounts/secret/a/b resolves to secret/ with options version "2"."""
    resp = raw("GET", "/v1/sys/internal/ui/mounts/secret/a/b")
    assert resp.status_code == 200
    data = resp.json()["data"]
    assert data["path"] == "secret/"
    assert data["options"] == {"version": "2"}
    assert data["type"] == "kv"
    assert resp.json()["mount_type"] == "system"


def test_mounts_all_path_is_served_too(raw: Raw) -> None:
    """§7 sys/mounts-all/{path} answers like sys/internal/ui/mounts/{path}."""
    resp = raw("GET", "/v1/sys/mounts-all/secret/app")
    assert resp.json()["data"]["path"] == "secret/"


def test_preflight_on_kv_v1_reports_version_1(raw: Raw) -> None:
    """§7 a v1 mount's options say version "1" (or nothing): the CLI treats it as v1."""
    raw("POST", "/v1/sys/mounts/old", json={"type": "kv", "options": {"version": "1"}})
    assert raw("GET", "/v1/sys/internal/ui/mounts/old/x").json()["data"]["options"] == {
        "version": "1"}


def test_preflight_unknown_mount_is_403_with_exact_message(raw: Raw) -> None:
    """§7 an unknown mount is 403 (not 404) with the preflight message."""
    resp = raw("GET", "/v1/sys/internal/ui/mounts/nonexistent")
    assert resp.status_code == 403
    assert resp.json() == {"errors": [
        'preflight capability check returned 403, please ensure client\'s policies grant '
        'access to path "nonexistent/"']}


def test_preflight_needs_some_capability_on_the_mount(
        client: hvac.Client, raw: Raw) -> None:
    """§7 a token with no rule under the mount gets the 403; any capability is enough."""
    client.sys.create_or_update_policy("reader", 'path "secret/data/app" { capabilities = '
                                                 '["read"] }')
    reader = client.auth.token.create(policies=["reader"], ttl="1h")["auth"]["client_token"]
    nobody = client.auth.token.create(policies=["default"], ttl="1h")["auth"]["client_token"]
    assert raw("GET", "/v1/sys/internal/ui/mounts/secret/app", token=reader).status_code == 200
    assert raw("GET", "/v1/sys/internal/ui/mounts/secret/app", token=nobody).status_code == 403


def test_unmount_revokes_its_leases(client: hvac.Client, vault: DevVault) -> None:
    """§5.2 disabling a database mount revokes the leases it issued."""
    client.sys.enable_secrets_engine("database", path="db2")
    client.write("db2/roles/r", db_name="x", default_ttl="1h")
    lease_id = client.read("db2/creds/r")["lease_id"]
    client.sys.disable_secrets_engine("db2")
    assert vault.lease_state(lease_id) == "revoked"


def test_tune_mount_ttls(client: hvac.Client) -> None:
    """§7 sys/mounts/{path}/tune reads and writes the mount's lease TTLs."""
    client.sys.enable_secrets_engine("kv", path="tuned")
    client.sys.tune_mount_configuration("tuned", default_lease_ttl="1h", max_lease_ttl="2h")
    got = client.sys.read_mount_configuration("tuned")["data"]
    assert (got["default_lease_ttl"], got["max_lease_ttl"]) == (3600, 7200)
