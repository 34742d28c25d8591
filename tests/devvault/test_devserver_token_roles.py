"""Token roles: auth/token/roles/{name} and auth/token/create/{role} (Vault's token store)."""

from __future__ import annotations

from collections.abc import Callable

import hvac
import pytest
import requests
from hvac import exceptions

from devvault import DevVault

Raw = Callable[..., requests.Response]
MakeClient = Callable[[str], hvac.Client]


def write_role(client: hvac.Client, name: str, **fields: object) -> None:
    client.write_data(f"auth/token/roles/{name}", data=fields)


def test_role_write_read_list_delete(client: hvac.Client) -> None:
    """roles/{name}: written, read back in seconds, listed, deleted (then a read is 404)."""
    write_role(client, "ci", allowed_policies=["ci", "Dev"], orphan=True, renewable=False,
               token_period="1h", token_explicit_max_ttl="24h")
    data = client.read("auth/token/roles/ci")["data"]
    assert data["allowed_policies"] == ["ci", "dev"]
    assert (data["orphan"], data["renewable"]) == (True, False)
    assert (data["token_period"], data["period"]) == (3600, 3600)
    assert (data["token_explicit_max_ttl"], data["explicit_max_ttl"]) == (86400, 86400)
    assert data["name"] == "ci" and data["path_suffix"] == ""
    assert client.list("auth/token/roles")["data"]["keys"] == ["ci"]
    client.delete("auth/token/roles/ci")
    assert client.read("auth/token/roles/ci") is None


def test_list_without_roles_is_404(raw: Raw) -> None:
    """LIST auth/token/roles with no roles: 404 {"errors":[]}."""
    resp = raw("LIST", "/v1/auth/token/roles")
    assert resp.status_code == 404 and resp.json() == {"errors": []}


def test_create_with_role_gets_allowed_policies(client: hvac.Client) -> None:
    """create/{role} with no policies asked gives the role's allowed_policies (+ default)."""
    write_role(client, "ci", allowed_policies=["ci"])
    auth = client.auth.token.create(role_name="ci")["auth"]
    assert auth["policies"] == ["ci", "default"]
    data = client.auth.token.lookup(auth["client_token"])["data"]
    assert data["path"] == "auth/token/create/ci" and data["role"] == "ci"


def test_role_allows_policies_beyond_the_parent(client: hvac.Client,
                                               token_client: MakeClient) -> None:
    """A role's allowed_policies replace the "subset of the parent" rule."""
    write_role(client, "ci", allowed_policies=["ci", "deploy"])
    client.sys.create_or_update_policy("creator", 'path "auth/token/create/ci" '
                                                  '{ capabilities = ["update"] }')
    parent = client.auth.token.create(policies=["creator"])["auth"]["client_token"]
    got = token_client(parent).auth.token.create(role_name="ci", policies=["deploy"])
    assert got["auth"]["policies"] == ["default", "deploy"]


def test_policy_outside_the_role_is_400(client: hvac.Client) -> None:
    """Asking for a policy the role does not allow: 400, subset error naming both lists."""
    write_role(client, "ci", allowed_policies=["ci"])
    with pytest.raises(exceptions.InvalidRequest,
                       match=r"must be subset of the role's allowed policies"):
        client.auth.token.create(role_name="ci", policies=["admin"])


def test_disallowed_policy_is_400(client: hvac.Client) -> None:
    """disallowed_policies: asking for one is 400."""
    write_role(client, "ci", disallowed_policies=["admin"])
    with pytest.raises(exceptions.InvalidRequest, match='"admin" is disallowed by this role'):
        client.auth.token.create(role_name="ci", policies=["admin"])


def test_orphan_role_makes_orphans_without_sudo(client: hvac.Client,
                                                token_client: MakeClient) -> None:
    """orphan: true gives orphan tokens even to a caller without sudo."""
    write_role(client, "solo", allowed_policies=["default"], orphan=True)
    client.sys.create_or_update_policy("creator", 'path "auth/token/create/solo" '
                                                  '{ capabilities = ["update"] }')
    parent = client.auth.token.create(policies=["creator"])["auth"]["client_token"]
    auth = token_client(parent).auth.token.create(role_name="solo")["auth"]
    assert auth["orphan"] is True


def test_non_renewable_role(client: hvac.Client) -> None:
    """renewable: false makes tokens whose renewal is 400 "lease is not renewable"."""
    write_role(client, "fixed", renewable=False)
    auth = client.auth.token.create(role_name="fixed", ttl="1h")["auth"]
    assert auth["renewable"] is False
    with pytest.raises(exceptions.InvalidRequest, match="lease is not renewable"):
        client.auth.token.renew(auth["client_token"])


def test_periodic_role(vault: DevVault, client: hvac.Client) -> None:
    """token_period: the token's TTL is the period, and each renewal resets it."""
    write_role(client, "svc", token_period="10m")
    auth = client.auth.token.create(role_name="svc")["auth"]
    assert auth["lease_duration"] == 600
    vault.advance_clock(500)
    assert client.auth.token.renew(auth["client_token"])["auth"]["lease_duration"] == 600


def test_explicit_max_ttl_role_caps_the_token(client: hvac.Client) -> None:
    """token_explicit_max_ttl caps every token of the role."""
    write_role(client, "short", token_explicit_max_ttl="30m")
    auth = client.auth.token.create(role_name="short", ttl="2h")["auth"]
    assert auth["lease_duration"] == 1800


def test_path_suffix_in_token_path(client: hvac.Client) -> None:
    """path_suffix lands in the token's path: auth/token/create/{role}/{suffix}."""
    write_role(client, "ci", path_suffix="v2")
    token = client.auth.token.create(role_name="ci")["auth"]["client_token"]
    assert client.auth.token.lookup(token)["data"]["path"] == "auth/token/create/ci/v2"


def test_unknown_role_is_400(client: hvac.Client) -> None:
    """create/{role} for a role that does not exist: 400 "unknown role x"."""
    with pytest.raises(exceptions.InvalidRequest, match="unknown role nope"):
        client.auth.token.create(role_name="nope")
