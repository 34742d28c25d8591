"""Leases and the database engine (vault-http-api.md §5.1-§5.3)."""

from __future__ import annotations

import re
from collections.abc import Callable

import hvac
import pytest
import requests
from devvault.leases import LeaseManager
from devvault.mounts import Clock
from devvault.wire import VaultError
from hvac import exceptions

from devvault import DevVault

Raw = Callable[..., requests.Response]
MakeClient = Callable[[str], hvac.Client]


def test_creds_issue_leased_user(client: hvac.Client) -> None:
    """§5.3 creds: username/password, lease_id database/creds/ROLE/ID, renewable, default_ttl."""
    got = client.secrets.database.generate_credentials("dev")
    assert re.fullmatch(r"database/creds/dev/[A-Za-z0-9]{24}", got["lease_id"])
    assert (got["renewable"], got["lease_duration"]) == (True, 3600)
    assert re.fullmatch(r"v-root-dev-[A-Za-z0-9]{20}-\d{10}", got["data"]["username"])
    assert len(got["data"]["password"]) == 20
    assert got["mount_type"] == "database" and got["auth"] is None


def test_each_read_issues_a_new_set(vault: DevVault, client: hvac.Client) -> None:
    """§5.3 every read of creds/ is a new user under a new lease."""
    first = client.secrets.database.generate_credentials("dev")
    second = client.secrets.database.generate_credentials("dev")
    assert first["data"]["username"] != second["data"]["username"]
    assert vault.active_leases("database/creds/dev") == sorted(
        [first["lease_id"], second["lease_id"]])


def test_unknown_role_is_400(client: hvac.Client) -> None:
    """§5.3 creds of an unknown role: 400 "unknown role: x"."""
    with pytest.raises(exceptions.InvalidRequest, match="unknown role: nope"):
        client.secrets.database.generate_credentials("nope")


def test_role_write_and_read(client: hvac.Client) -> None:
    """§5.3 roles/{name}: default_ttl and max_ttl in seconds; statements stored."""
    client.secrets.database.create_role("app", db_name="dev", default_ttl="5m", max_ttl="1h",
                                        creation_statements=["CREATE ROLE x"])
    got = client.secrets.database.read_role("app")["data"]
    assert (got["default_ttl"], got["max_ttl"]) == (300, 3600)
    assert got["creation_statements"] == ["CREATE ROLE x"]
    assert client.secrets.database.generate_credentials("app")["lease_duration"] == 300


def test_config_is_accepted(client: hvac.Client) -> None:
    """§5.3 config/{name} is accepted and read back without the password."""
    client.secrets.database.configure("pg", "postgresql-database-plugin",
                                      connection_url="postgresql://{{username}}@db/app",
                                      username="admin", password="s3cret")
    got = client.secrets.database.read_connection("pg")["data"]
    assert got["plugin_name"] == "postgresql-database-plugin"
    assert "password" not in got["connection_details"]


def test_renew_returns_lease_fields_at_top_level(vault: DevVault, client: hvac.Client) -> None:
    """§5.1 renew: lease_id, renewable and lease_duration at the top level, data null."""
    lease_id = client.secrets.database.generate_credentials("dev")["lease_id"]
    vault.advance_clock(1800)
    got = client.sys.renew_lease(lease_id, increment=3600)
    assert (got["lease_id"], got["renewable"], got["lease_duration"]) == (lease_id, True, 3600)
    assert got["data"] is None


def test_renew_is_capped_at_max_ttl(vault: DevVault, client: hvac.Client) -> None:
    """§5.1 the granted duration never takes the lease past issue time + max_ttl (24h)."""
    lease_id = client.secrets.database.generate_credentials("dev")["lease_id"]
    for _ in range(23):
        vault.advance_clock(3000)
        client.sys.renew_lease(lease_id, increment=3600)
    vault.advance_clock(3000)  # 24 * 3000 s = 20h since issue
    got = client.sys.renew_lease(lease_id, increment=10 * 3600)
    assert 4 * 3600 - 1 <= got["lease_duration"] <= 4 * 3600
    vault.advance_clock(4 * 3600 + 1)
    assert vault.lease_state(lease_id) == "expired"


def test_renew_without_lease_id_is_400(raw: Raw) -> None:
    """§5.1 renew without lease_id: 400 "lease_id must be specified"."""
    resp = raw("PUT", "/v1/sys/leases/renew", json={})
    assert (resp.status_code, resp.json()) == (400, {"errors": ["lease_id must be specified"]})


def test_renew_unknown_lease_is_400(client: hvac.Client) -> None:
    """§5.1 renew of an unknown lease: 400 "lease not found"."""
    with pytest.raises(exceptions.InvalidRequest) as info:
        client.sys.renew_lease("database/creds/dev/nope")
    assert info.value.errors == ["lease not found"]


def test_renew_expired_lease_is_400(vault: DevVault, client: hvac.Client) -> None:
    """§5.1 renew after the TTL ran out: 400 "lease expired"."""
    lease_id = client.secrets.database.generate_credentials("dev")["lease_id"]
    vault.advance_clock(3601)
    with pytest.raises(exceptions.InvalidRequest) as info:
        client.sys.renew_lease(lease_id)
    assert info.value.errors == ["lease expired"]


def test_renew_not_renewable_lease_is_400() -> None:
    """§5.1 renew of a non-renewable lease: 400 "lease is not renewable" (lease manager)."""
    leases = LeaseManager(Clock())
    lease = leases.create("x/creds/r", ttl=60, max_ttl=600, renewable=False,
                          token_accessor=None)
    with pytest.raises(VaultError) as info:
        leases.renew(lease.id, 60)
    assert (info.value.status, info.value.errors) == (400, ["lease is not renewable"])


def test_revoke_is_204_and_kills_credentials(vault: DevVault, client: hvac.Client) -> None:
    """§5.2 revoke: 204; the lease is revoked and its password stops working."""
    got = client.secrets.database.generate_credentials("dev")
    user, password = got["data"]["username"], got["data"]["password"]
    assert vault.check_db_credentials(user, password)
    assert client.sys.revoke_lease(got["lease_id"]).status_code == 204
    assert vault.lease_state(got["lease_id"]) == "revoked"
    assert not vault.check_db_credentials(user, password)
    with pytest.raises(exceptions.InvalidRequest, match="lease not found"):
        client.sys.renew_lease(got["lease_id"])


def test_revoke_unknown_lease_is_204(client: hvac.Client) -> None:
    """§5.2 revoking an unknown lease is still 204."""
    assert client.sys.revoke_lease("database/creds/dev/nope").status_code == 204


def test_revoke_async_is_202(raw: Raw, client: hvac.Client) -> None:
    """§5.2 sync=false answers 202 with an empty body."""
    lease_id = client.secrets.database.generate_credentials("dev")["lease_id"]
    resp = raw("PUT", "/v1/sys/leases/revoke", json={"lease_id": lease_id, "sync": False})
    assert (resp.status_code, resp.content) == (202, b"")


def test_lookup_fields(vault: DevVault, client: hvac.Client) -> None:
    """§5.2 lookup: id, issue_time, expire_time, last_renewal, renewable, ttl."""
    lease_id = client.secrets.database.generate_credentials("dev")["lease_id"]
    data = client.sys.read_lease(lease_id)["data"]
    assert set(data) == {"id", "issue_time", "expire_time", "last_renewal", "renewable",
                         "ttl"}
    assert data["id"] == lease_id and data["last_renewal"] is None
    vault.advance_clock(60)
    client.sys.renew_lease(lease_id)
    assert client.sys.read_lease(lease_id)["data"]["last_renewal"] is not None


def test_expiry_on_server_clock_kills_credentials(vault: DevVault,
                                                  client: hvac.Client) -> None:
    """§5 a lease past its TTL is expired and its credentials are gone."""
    got = client.secrets.database.generate_credentials("dev")
    vault.advance_clock(3601)
    assert vault.lease_state(got["lease_id"]) == "expired"
    assert vault.active_leases("database/") == []
    assert not vault.check_db_credentials(got["data"]["username"], got["data"]["password"])


def test_revoking_the_token_revokes_its_leases(vault: DevVault, client: hvac.Client,
                                               token_client: MakeClient) -> None:
    """§5 leases die with the token that obtained them (one set of credentials, not two)."""
    token = client.auth.token.create(ttl="1h")["auth"]["client_token"]
    app = token_client(token)
    lease_id = app.secrets.database.generate_credentials("dev")["lease_id"]
    assert vault.active_leases("database/creds/dev") == [lease_id]
    app.auth.token.revoke_self()
    assert vault.lease_state(lease_id) == "revoked"


def test_token_expiry_revokes_its_leases(vault: DevVault, client: hvac.Client,
                                         token_client: MakeClient) -> None:
    """§5 when the token that read creds expires, its lease is revoked too."""
    app = token_client(client.auth.token.create(ttl="10m")["auth"]["client_token"])
    lease_id = app.secrets.database.generate_credentials("dev")["lease_id"]
    vault.advance_clock(601)
    assert vault.lease_state(lease_id) == "revoked"


def test_legacy_renew_and_revoke_paths(raw: Raw, client: hvac.Client) -> None:
    """§5 sys/renew/{id} and sys/revoke/{id} work like sys/leases/…"""
    lease_id = client.secrets.database.generate_credentials("dev")["lease_id"]
    assert raw("PUT", f"/v1/sys/renew/{lease_id}").json()["lease_id"] == lease_id
    assert raw("PUT", f"/v1/sys/revoke/{lease_id}").status_code == 204


def test_revoke_prefix(vault: DevVault, client: hvac.Client) -> None:
    """§5.2 revoke-prefix revokes every lease under the prefix."""
    for _ in range(2):
        client.secrets.database.generate_credentials("dev")
    client.adapter.put("/v1/sys/leases/revoke-prefix/database/creds/dev")
    assert vault.active_leases("database/") == []


def test_lease_state_of_unknown_id(vault: DevVault) -> None:
    """lease_state says "unknown" for an id the server never issued."""
    assert vault.lease_state("database/creds/dev/nope") == "unknown"


def test_list_leases_by_prefix(client: hvac.Client) -> None:
    """LIST sys/leases/lookup/{prefix}: the lease IDs' next segments as keys."""
    first = client.secrets.database.generate_credentials("dev")["lease_id"]
    second = client.secrets.database.generate_credentials("dev")["lease_id"]
    keys = client.sys.list_leases("database/creds/dev")["data"]["keys"]
    assert sorted(keys) == sorted(x.rsplit("/", 1)[1] for x in (first, second))
    assert client.sys.list_leases("database/creds")["data"]["keys"] == ["dev/"]


def test_list_leases_unknown_prefix_is_404(client: hvac.Client) -> None:
    """LIST of a prefix without leases: 404 (hvac InvalidPath)."""
    with pytest.raises(exceptions.InvalidPath):
        client.sys.list_leases("database/creds/nope")


def test_revoke_prefix_through_hvac(vault: DevVault, client: hvac.Client) -> None:
    """sys.revoke_prefix revokes every lease under the prefix (204)."""
    lease_id = client.secrets.database.generate_credentials("dev")["lease_id"]
    assert client.sys.revoke_prefix("database/creds/dev").status_code == 204
    assert vault.lease_state(lease_id) == "revoked"


def test_revoke_force(vault: DevVault, client: hvac.Client) -> None:
    """sys.revoke_force revokes every lease under the prefix (204)."""
    lease_id = client.secrets.database.generate_credentials("dev")["lease_id"]
    assert client.sys.revoke_force("database/creds").status_code == 204
    assert vault.lease_state(lease_id) == "revoked"


def test_revoke_force_needs_sudo(client: hvac.Client, token_client: MakeClient) -> None:
    """revoke-force is root-protected: update without sudo is 403."""
    client.sys.create_or_update_policy("no-sudo", 'path "sys/leases/*" '
                                                  '{ capabilities = ["update"] }')
    token = client.auth.token.create(policies=["no-sudo"])["auth"]["client_token"]
    with pytest.raises(exceptions.Forbidden):
        token_client(token).sys.revoke_force("database/creds")


def test_read_lease_through_hvac(client: hvac.Client) -> None:
    """sys.read_lease: id, issue_time, expire_time, last_renewal, renewable, ttl."""
    got = client.secrets.database.generate_credentials("dev")
    data = client.sys.read_lease(got["lease_id"])["data"]
    assert (data["id"], data["renewable"]) == (got["lease_id"], True)
    assert 3590 <= data["ttl"] <= 3600 and data["last_renewal"] is None
