"""Response wrapping (vault-http-api.md §6): X-Vault-Wrap-TTL and sys/wrapping/*."""

from __future__ import annotations

import re
from collections.abc import Callable

import hvac
import pytest
import requests
from hvac import exceptions

from devvault import DevVault

Raw = Callable[..., requests.Response]
MakeClient = Callable[[str], hvac.Client]

INVALID = "wrapping token is not valid or does not exist"


def test_wrapped_read_returns_wrap_info_envelope(raw: Raw) -> None:
    """§6 a wrapped read: data null, request_id "", wrap_info with token, accessor, ttl, path."""
    raw("POST", "/v1/secret/data/app", json={"data": {"k": "v"}})
    resp = raw("GET", "/v1/secret/data/app", headers={"X-Vault-Wrap-TTL": "5m"})
    assert resp.status_code == 200 and resp.headers["Content-Type"] == "application/json"
    body = resp.json()
    assert list(body) == ["request_id", "lease_id", "renewable", "lease_duration", "data",
                          "wrap_info", "warnings", "auth", "mount_type"]
    assert (body["request_id"], body["data"], body["auth"]) == ("", None, None)
    info = body["wrap_info"]
    assert list(info) == ["token", "accessor", "ttl", "creation_time", "creation_path"]
    assert info["token"].startswith("hvs.") and info["accessor"]
    assert (info["ttl"], info["creation_path"]) == (300, "secret/data/app")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", info["creation_time"])


def test_unwrap_with_the_wrapping_token_returns_the_original(client: hvac.Client,
                                                             token_client: MakeClient) -> None:
    """§6 unwrap with X-Vault-Token = the wrapping token returns the original response."""
    client.secrets.kv.v2.create_or_update_secret(path="app", secret={"k": "v"})
    wrap = client.read("secret/data/app", wrap_ttl="60s")["wrap_info"]
    got = token_client(wrap["token"]).sys.unwrap()
    assert got["data"]["data"] == {"k": "v"}
    assert got["mount_type"] == "kv" and got["wrap_info"] is None


def test_unwrap_is_single_use(client: hvac.Client) -> None:
    """§6 the second unwrap is 400 "wrapping token is not valid or does not exist"."""
    token = client.sys.wrap({"zip": "zap"}, ttl=60)["wrap_info"]["token"]
    assert client.sys.unwrap(token)["data"] == {"zip": "zap"}
    with pytest.raises(exceptions.InvalidRequest) as info:
        client.sys.unwrap(token)
    assert info.value.errors == [INVALID]


def test_bogus_wrapping_token_error_body(raw: Raw) -> None:
    """§6 a bogus wrapping token in the body: 400 with Vault's exact errors list."""
    resp = raw("POST", "/v1/sys/wrapping/unwrap", json={"token": "hvs.bogus"})
    assert resp.status_code == 400
    assert resp.json() == {"errors": [INVALID]}


def test_wrapping_token_is_revoked_on_unwrap(client: hvac.Client,
                                             token_client: MakeClient) -> None:
    """§6 the wrapping token is a real token, revoked by the unwrap."""
    token = client.sys.wrap({"a": "b"})["wrap_info"]["token"]
    assert client.auth.token.lookup(token)["data"]["policies"] == ["response-wrapping"]
    token_client(token).sys.unwrap()
    with pytest.raises(exceptions.Forbidden):
        client.auth.token.lookup(token)


def test_wrapping_token_works_only_on_sys_wrapping(client: hvac.Client,
                                                   token_client: MakeClient) -> None:
    """§6 a wrapping token is refused everywhere but sys/wrapping/{unwrap,lookup,rewrap}."""
    token = client.sys.wrap({"a": "b"})["wrap_info"]["token"]
    with pytest.raises(exceptions.Forbidden):
        token_client(token).secrets.kv.v2.read_secret_version(path="app",
                                                              raise_on_deleted_version=True)


def test_wrapping_token_expires_with_its_ttl(vault: DevVault, client: hvac.Client) -> None:
    """§6 after its TTL the wrapping token no longer unwraps."""
    token = client.sys.wrap({"a": "b"}, ttl="30s")["wrap_info"]["token"]
    vault.advance_clock(31)
    with pytest.raises(exceptions.InvalidRequest, match=INVALID):
        client.sys.unwrap(token)


def test_lookup_shows_creation_fields(client: hvac.Client) -> None:
    """§6 lookup: creation_path, creation_time and creation_ttl; it does not use the token."""
    wrap = client.sys.wrap({"a": "b"}, ttl=120)["wrap_info"]
    got = client.write_data("sys/wrapping/lookup", data={"token": wrap["token"]})["data"]
    assert got == {"creation_path": "sys/wrapping/wrap",
                   "creation_time": wrap["creation_time"], "creation_ttl": 120}
    assert client.sys.unwrap(wrap["token"])["data"] == {"a": "b"}


def test_lookup_needs_no_other_token(vault: DevVault, client: hvac.Client) -> None:
    """§6 lookup is unauthenticated: the wrapping token in the body is enough."""
    token = client.sys.wrap({"a": "b"})["wrap_info"]["token"]
    resp = requests.post(vault.address + "/v1/sys/wrapping/lookup", json={"token": token},
                         timeout=5)
    assert resp.status_code == 200 and resp.json()["data"]["creation_ttl"] == 60


def test_rewrap_issues_a_new_token_for_the_same_response(client: hvac.Client) -> None:
    """§6 rewrap: a new wrapping token (same path and TTL), the old one is gone."""
    old = client.sys.wrap({"a": "b"}, ttl=90)["wrap_info"]
    new = client.write_data("sys/wrapping/rewrap", data={"token": old["token"]})["wrap_info"]
    assert new["token"] != old["token"]
    assert (new["ttl"], new["creation_path"]) == (90, "sys/wrapping/wrap")
    with pytest.raises(exceptions.InvalidRequest):
        client.sys.unwrap(old["token"])
    assert client.sys.unwrap(new["token"])["data"] == {"a": "b"}


def test_wrapped_token_create_has_wrapped_accessor(client: hvac.Client) -> None:
    """§6 wrapping an auth response sets wrapped_accessor to the new token's accessor."""
    info = client.auth.token.create(policies=["default"], wrap_ttl="60s")["wrap_info"]
    auth = client.sys.unwrap(info["token"])["auth"]
    assert info["wrapped_accessor"] == auth["accessor"]
    assert info["creation_path"] == "auth/token/create"


def test_no_content_response_is_not_wrapped(raw: Raw) -> None:
    """§6 a 204 has nothing to wrap: it stays a 204."""
    resp = raw("POST", "/v1/sys/policy/p", json={"policy": 'path "x" {capabilities=["read"]}'},
               headers={"X-Vault-Wrap-TTL": "60"})
    assert resp.status_code == 204


def test_default_policy_may_wrap_and_unwrap(client: hvac.Client,
                                            token_client: MakeClient) -> None:
    """§6 the default policy allows sys/wrapping/wrap and unwrap with the token in the body."""
    token = client.auth.token.create(policies=["default"])["auth"]["client_token"]
    user = token_client(token)
    wrapped = user.sys.wrap({"x": "y"})["wrap_info"]["token"]
    assert user.sys.unwrap(wrapped)["data"] == {"x": "y"}


def test_wrap_without_wrap_ttl_is_400(raw: Raw) -> None:
    """sys/wrapping/wrap without X-Vault-Wrap-TTL: 400 with Vault's message."""
    resp = raw("POST", "/v1/sys/wrapping/wrap", json={"a": "b"})
    assert resp.status_code == 400
    assert resp.json() == {"errors": ["endpoint requires response wrapping to be used"]}
