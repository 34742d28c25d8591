"""Tokens (vault-http-api.md §4.1, §1.3)."""

from __future__ import annotations

from collections.abc import Callable

import hvac
import pytest
import requests
from hvac import exceptions

from devvault import DevVault

Raw = Callable[..., requests.Response]
MakeClient = Callable[[str], hvac.Client]


def new_token(client: hvac.Client, **kwargs: object) -> str:
    return str(client.auth.token.create(**kwargs)["auth"]["client_token"])


def test_root_token_lookup_self(client: hvac.Client) -> None:
    """§4.1 the root token: policies [root], no expiry, ttl 0, path auth/token/root."""
    data = client.auth.token.lookup_self()["data"]
    assert data["policies"] == ["root"]
    assert (data["expire_time"], data["ttl"], data["creation_ttl"]) == (None, 0, 0)
    assert data["path"] == "auth/token/root"
    assert data["id"] == "root" and data["type"] == "service"
    assert "issue_time" not in data


def test_create_returns_auth_block(client: hvac.Client) -> None:
    """§4.1 create: 200, data null, auth block with default added, service token, not orphan."""
    got = client.auth.token.create(policies=["web"], ttl="1h")
    assert got["data"] is None
    auth = got["auth"]
    assert auth["client_token"].startswith("hvs.")
    assert auth["policies"] == auth["token_policies"] == ["default", "web"]
    assert (auth["lease_duration"], auth["renewable"], auth["orphan"]) == (3600, True, False)
    assert (auth["token_type"], auth["num_uses"], auth["entity_id"]) == ("service", 0, "")
    assert list(auth)[:2] == ["client_token", "accessor"]


def test_create_warns_about_missing_policy(client: hvac.Client) -> None:
    """§4.1 create warns `Policy "web" does not exist`."""
    got = client.auth.token.create(policies=["web"], ttl="1h")
    assert got["warnings"] == ['Policy "web" does not exist']


def test_created_token_lookup_self(client: hvac.Client, token_client: MakeClient) -> None:
    """§4.1 a non-root token has issue_time, a string expire_time, creation_ttl and ttl."""
    token = new_token(client, ttl="1h", meta={"app": "x"})
    data = token_client(token).auth.token.lookup_self()["data"]
    assert data["creation_ttl"] == 3600 and 3595 <= data["ttl"] <= 3600
    assert isinstance(data["expire_time"], str) and data["issue_time"].endswith("Z")
    assert data["renewable"] is True and data["meta"] == {"app": "x"}
    assert data["path"] == "auth/token/create"


def test_default_ttl_is_768h(client: hvac.Client) -> None:
    """§4.1 a token created without ttl gets the 768h default."""
    got = client.auth.token.create(policies=["default"])
    assert got["auth"]["lease_duration"] == 2764800


def test_expired_token_is_forbidden(vault: DevVault, client: hvac.Client,
                                    token_client: MakeClient) -> None:
    """§1.3 a token past its TTL (server clock advanced) is 403 permission denied."""
    user = token_client(new_token(client, ttl="10m"))
    user.auth.token.lookup_self()
    vault.advance_clock(601)
    with pytest.raises(exceptions.Forbidden) as info:
        user.auth.token.lookup_self()
    assert info.value.errors == ["permission denied"]


def test_unknown_token_is_forbidden(token_client: MakeClient) -> None:
    """§1.3 an unknown token is 403 permission denied (hvac Forbidden)."""
    with pytest.raises(exceptions.Forbidden) as info:
        token_client("hvs.nope").auth.token.lookup_self()
    assert info.value.errors == ["permission denied"]


def test_renew_self_extends_ttl(vault: DevVault, client: hvac.Client,
                                token_client: MakeClient) -> None:
    """§4.1 renew-self returns the auth block with the new lease_duration."""
    user = token_client(new_token(client, ttl="10m"))
    vault.advance_clock(300)
    got = user.auth.token.renew_self(increment="1h")
    assert got["auth"]["lease_duration"] == 3600
    assert got["auth"]["renewable"] is True
    vault.advance_clock(1800)
    assert user.auth.token.lookup_self()["data"]["ttl"] <= 1800


def test_renew_without_increment_uses_creation_ttl(client: hvac.Client,
                                                   token_client: MakeClient) -> None:
    """§4.1 renew-self with {} renews by the token's original TTL."""
    user = token_client(new_token(client, ttl="10m"))
    assert user.auth.token.renew_self()["auth"]["lease_duration"] == 600


def test_renew_is_capped_at_explicit_max_ttl(vault: DevVault, client: hvac.Client,
                                             token_client: MakeClient) -> None:
    """§4.1 renewal never passes explicit_max_ttl; Vault warns that the TTL was capped."""
    user = token_client(new_token(client, ttl="10m", explicit_max_ttl="30m"))
    vault.advance_clock(5 * 60)
    got = user.auth.token.renew_self(increment="1h")
    assert 1495 <= got["auth"]["lease_duration"] <= 1500
    assert got["warnings"] and "capped" in got["warnings"][0]
    vault.advance_clock(1501)
    with pytest.raises(exceptions.Forbidden):
        user.auth.token.lookup_self()


def test_not_renewable_token_renew_is_400(client: hvac.Client,
                                          token_client: MakeClient) -> None:
    """§4.1 renewing a token created renewable=false is 400 "lease is not renewable"."""
    user = token_client(new_token(client, ttl="10m", renewable=False))
    with pytest.raises(exceptions.InvalidRequest) as info:
        user.auth.token.renew_self()
    assert info.value.errors == ["lease is not renewable"]


def test_root_token_renew_is_400_lease_not_found(client: hvac.Client) -> None:
    """§4.1 the root token has no lease: renew-self is 400 "lease not found"."""
    with pytest.raises(exceptions.InvalidRequest, match="lease not found"):
        client.auth.token.renew_self()


def test_revoke_self_is_204_then_forbidden(client: hvac.Client,
                                           token_client: MakeClient) -> None:
    """§4.1 revoke-self is 204 and the token stops working."""
    user = token_client(new_token(client, ttl="10m"))
    assert user.auth.token.revoke_self().status_code == 204
    with pytest.raises(exceptions.Forbidden):
        user.auth.token.lookup_self()


def test_lookup_other_token(client: hvac.Client) -> None:
    """§4.1 auth/token/lookup with a token in the body returns its data."""
    token = new_token(client, ttl="10m", policies=["default"])
    assert client.auth.token.lookup(token)["data"]["id"] == token


def test_lookup_of_bad_token_is_403(client: hvac.Client) -> None:
    """§4.1 lookup of an unknown token is 403."""
    with pytest.raises(exceptions.Forbidden):
        client.auth.token.lookup("hvs.nope")


def test_revoking_parent_revokes_child(client: hvac.Client, token_client: MakeClient) -> None:
    """§4.1 child tokens die with their parent (orphans do not)."""
    parent = token_client(new_token(client, ttl="1h", policies=["root"]))
    child = token_client(new_token(parent, ttl="1h"))
    orphan = token_client(str(parent.auth.token.create_orphan(ttl="1h")["auth"]["client_token"]))
    parent.auth.token.revoke_self()
    with pytest.raises(exceptions.Forbidden):
        child.auth.token.lookup_self()
    assert orphan.auth.token.lookup_self()["data"]["orphan"] is True


def test_num_uses_limits_requests(client: hvac.Client, token_client: MakeClient) -> None:
    """§4.1 a token with num_uses=2 serves two requests, then is revoked."""
    user = token_client(new_token(client, ttl="1h", num_uses=2))
    user.auth.token.lookup_self()
    user.auth.token.lookup_self()
    with pytest.raises(exceptions.Forbidden):
        user.auth.token.lookup_self()


def test_child_policies_must_be_subset(client: hvac.Client, token_client: MakeClient) -> None:
    """§4.1 a non-root token cannot create a child with policies it lacks."""
    user = token_client(new_token(client, ttl="1h", policies=["a"]))
    client.sys.create_or_update_policy("a", 'path "auth/token/create" { capabilities = '
                                            '["update"] }')
    with pytest.raises(exceptions.InvalidRequest, match="child policies must be subset"):
        user.auth.token.create(policies=["b"], ttl="1h")
    assert user.auth.token.create(policies=["a"], ttl="1h")["auth"]["policies"] == [
        "a", "default"]


def test_periodic_token_renews_to_period(vault: DevVault, client: hvac.Client,
                                         token_client: MakeClient) -> None:
    """§4.1 a periodic token's renewal always grants the period."""
    user = token_client(new_token(client, period="10m"))
    vault.advance_clock(500)
    assert user.auth.token.renew_self(increment="1h")["auth"]["lease_duration"] == 600


def test_root_policy_token_without_ttl_never_expires(vault: DevVault, client: hvac.Client,
                                                     token_client: MakeClient) -> None:
    """§4.1 a root-policy token created without a TTL never expires."""
    user = token_client(new_token(client))
    vault.advance_clock(10 * 365 * 86400)
    assert user.auth.token.lookup_self()["data"]["expire_time"] is None


def test_lookup_accessor_never_returns_the_token(client: hvac.Client) -> None:
    """§4.1 lookup-accessor shows the token's fields but "id": "" (an accessor is no token)."""
    auth = client.auth.token.create(policies=["default"], ttl="1h")["auth"]
    data = client.auth.token.lookup_accessor(auth["accessor"])["data"]
    assert data["id"] == ""
    assert data["accessor"] == auth["accessor"] and data["policies"] == ["default"]
    assert auth["client_token"] not in str(data)


def test_lookup_by_token_still_shows_its_id(client: hvac.Client) -> None:
    """§4.1 lookup (by token) and lookup-self show the id; only accessor lookups hide it."""
    token = new_token(client, policies=["default"])
    assert client.auth.token.lookup(token)["data"]["id"] == token


def test_lookup_shows_namespace_path(client: hvac.Client) -> None:
    """§4.1 (Enterprise) token lookups carry namespace_path: "" in the root namespace."""
    assert client.auth.token.lookup_self()["data"]["namespace_path"] == ""
