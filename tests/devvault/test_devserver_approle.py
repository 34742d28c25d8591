"""AppRole auth (vault-http-api.md §4.2)."""

from __future__ import annotations

from collections.abc import Callable

import hvac
import pytest
import requests
from hvac import exceptions

from devvault import DevVault

Raw = Callable[..., requests.Response]


@pytest.fixture
def approle(client: hvac.Client) -> tuple[str, str]:
    """An enabled approle mount with role "app"; returns (role_id, secret_id)."""
    client.sys.enable_auth_method("approle")
    client.auth.approle.create_or_update_approle("app", token_policies=["app-read"],
                                                 token_ttl="1h", token_max_ttl="4h")
    role_id = client.auth.approle.read_role_id("app")["data"]["role_id"]
    secret_id = client.auth.approle.generate_secret_id("app")["data"]["secret_id"]
    return role_id, secret_id


def fresh(vault: DevVault) -> hvac.Client:
    return hvac.Client(url=vault.address)


def test_enable_lists_auth_method(client: hvac.Client) -> None:
    """§1.2 sys/auth lists token/ and the new approle/ (also at the top level)."""
    assert client.sys.enable_auth_method("approle").status_code == 204
    methods = client.sys.list_auth_methods()
    assert methods["data"]["approle/"]["type"] == "approle"
    assert methods["approle/"] == methods["data"]["approle/"]
    assert methods["data"]["token/"]["type"] == "token"


def test_secret_id_response_fields(client: hvac.Client, approle: tuple[str, str]) -> None:
    """§4.2 secret-id returns secret_id, secret_id_accessor and secret_id_ttl."""
    got = client.auth.approle.generate_secret_id("app")["data"]
    assert set(got) >= {"secret_id", "secret_id_accessor", "secret_id_ttl"}


def test_login_returns_auth_block(vault: DevVault, approle: tuple[str, str]) -> None:
    """§4.2 login: sorted policies with default, role_name metadata, orphan, renewable."""
    role_id, secret_id = approle
    c = fresh(vault)
    got = c.auth.approle.login(role_id=role_id, secret_id=secret_id)
    auth = got["auth"]
    assert auth["policies"] == auth["token_policies"] == ["app-read", "default"]
    assert auth["metadata"] == {"role_name": "app"}
    assert (auth["lease_duration"], auth["renewable"], auth["orphan"]) == (3600, True, True)
    assert auth["mfa_requirement"] is None and auth["num_uses"] == 0
    assert got["data"] is None
    assert c.token == auth["client_token"]  # use_token=True adopts it
    assert c.auth.token.lookup_self()["data"]["display_name"] == "approle"


def test_missing_role_id_is_400(vault: DevVault, approle: tuple[str, str]) -> None:
    """§4.2 empty role_id: 400 "missing role_id"."""
    with pytest.raises(exceptions.InvalidRequest) as info:
        fresh(vault).auth.approle.login(role_id="", secret_id=approle[1])
    assert info.value.errors == ["missing role_id"]


def test_unknown_role_id_is_400(vault: DevVault, approle: tuple[str, str]) -> None:
    """§4.2 unknown role_id: 400 "invalid role or secret ID"."""
    with pytest.raises(exceptions.InvalidRequest) as info:
        fresh(vault).auth.approle.login(role_id="nope", secret_id=approle[1])
    assert info.value.errors == ["invalid role or secret ID"]


def test_bad_secret_id_is_400(vault: DevVault, approle: tuple[str, str]) -> None:
    """§4.2 a wrong secret_id: 400 "invalid role or secret ID"."""
    with pytest.raises(exceptions.InvalidRequest) as info:
        fresh(vault).auth.approle.login(role_id=approle[0], secret_id="wrong")
    assert info.value.errors == ["invalid role or secret ID"]


def test_null_secret_id_is_missing_secret_id(raw: Raw, approle: tuple[str, str]) -> None:
    """§0/§4.2 secret_id null (as hvac sends it) with bind_secret_id: "missing secret_id"."""
    resp = raw("POST", "/v1/auth/approle/login", token="",
               json={"role_id": approle[0], "secret_id": None})
    assert (resp.status_code, resp.json()) == (400, {"errors": ["missing secret_id"]})


def test_secret_id_num_uses_is_enforced(vault: DevVault, client: hvac.Client,
                                        approle: tuple[str, str]) -> None:
    """§4.2 a secret ID with num_uses=1 logs in once."""
    role_id = approle[0]
    secret_id = client.adapter.post("/v1/auth/approle/role/app/secret-id",
                                    json={"num_uses": 1})["data"]["secret_id"]
    fresh(vault).auth.approle.login(role_id=role_id, secret_id=secret_id)
    with pytest.raises(exceptions.InvalidRequest):
        fresh(vault).auth.approle.login(role_id=role_id, secret_id=secret_id)


def test_secret_id_ttl_expires(vault: DevVault, client: hvac.Client,
                               approle: tuple[str, str]) -> None:
    """§4.2 a secret ID past its secret_id_ttl no longer logs in."""
    client.auth.approle.create_or_update_approle("app", secret_id_ttl="10m")
    secret_id = client.auth.approle.generate_secret_id("app")["data"]["secret_id"]
    vault.advance_clock(601)
    with pytest.raises(exceptions.InvalidRequest, match="invalid role or secret ID"):
        fresh(vault).auth.approle.login(role_id=approle[0], secret_id=secret_id)


def test_login_token_renewal_capped_by_token_max_ttl(vault: DevVault,
                                                     approle: tuple[str, str]) -> None:
    """§4.1/§4.2 a login token renews up to the role's token_max_ttl, then expires."""
    c = fresh(vault)
    c.auth.approle.login(role_id=approle[0], secret_id=approle[1])
    vault.advance_clock(3000)
    assert 11399 <= c.auth.token.renew_self(increment="4h")["auth"]["lease_duration"] <= 11400
    vault.advance_clock(11401)
    with pytest.raises(exceptions.Forbidden):
        c.auth.token.lookup_self()


def test_role_read_shows_token_fields(client: hvac.Client, approle: tuple[str, str]) -> None:
    """§4.2 reading a role shows its token_* fields in seconds."""
    got = client.auth.approle.read_role("app")["data"]
    assert (got["token_ttl"], got["token_max_ttl"]) == (3600, 14400)
    assert got["token_policies"] == ["app-read"] and got["bind_secret_id"] is True


def test_login_needs_no_token(raw: Raw, approle: tuple[str, str]) -> None:
    """§4.2 login is unauthenticated."""
    resp = raw("POST", "/v1/auth/approle/login", token="",
               json={"role_id": approle[0], "secret_id": approle[1]})
    assert resp.status_code == 200


def test_disabling_the_method_revokes_its_tokens(vault: DevVault, client: hvac.Client,
                                                 approle: tuple[str, str]) -> None:
    """Disabling an auth mount revokes the tokens it issued."""
    c = fresh(vault)
    c.auth.approle.login(role_id=approle[0], secret_id=approle[1])
    client.sys.disable_auth_method("approle")
    with pytest.raises(exceptions.Forbidden):
        c.auth.token.lookup_self()


def test_secret_id_creation_fields(client: hvac.Client, approle: tuple[str, str]) -> None:
    """secret-id: secret_id, secret_id_accessor, secret_id_ttl and secret_id_num_uses."""
    client.auth.approle.create_or_update_approle("app", secret_id_ttl="10m",
                                                 secret_id_num_uses=3)
    data = client.auth.approle.generate_secret_id("app", metadata={"pod": "p1"})["data"]
    assert set(data) == {"secret_id", "secret_id_accessor", "secret_id_num_uses",
                         "secret_id_ttl"}
    assert (data["secret_id_ttl"], data["secret_id_num_uses"]) == (600, 3)
    looked = client.auth.approle.read_secret_id("app", data["secret_id"])["data"]
    assert looked["metadata"] == {"pod": "p1"}


def test_secret_id_accessor_lookup(client: hvac.Client, approle: tuple[str, str]) -> None:
    """secret-id-accessor/lookup: the secret ID's fields, never the secret ID itself."""
    created = client.auth.approle.generate_secret_id("app")["data"]
    data = client.auth.approle.read_secret_id_accessor(
        "app", created["secret_id_accessor"])["data"]
    assert data["secret_id_accessor"] == created["secret_id_accessor"]
    assert {"creation_time", "expiration_time", "secret_id_num_uses", "secret_id_ttl",
            "metadata"} <= set(data)
    assert created["secret_id"] not in str(data)


def test_secret_id_accessor_destroy(vault: DevVault, client: hvac.Client,
                                    approle: tuple[str, str]) -> None:
    """secret-id-accessor/destroy: 204, and the secret ID no longer logs in."""
    role_id, secret_id = approle
    accessor = client.auth.approle.read_secret_id("app", secret_id)["data"]["secret_id_accessor"]
    resp = client.auth.approle.destroy_secret_id_accessor("app", accessor)
    assert resp.status_code == 204
    with pytest.raises(exceptions.InvalidRequest, match="invalid role or secret ID"):
        fresh(vault).auth.approle.login(role_id, secret_id)


def test_unknown_accessor_lookup_is_404(raw: Raw, approle: tuple[str, str]) -> None:
    """secret-id-accessor/lookup of an unknown accessor: 404, an envelope with data.error."""
    resp = raw("POST", "/v1/auth/approle/role/app/secret-id-accessor/lookup",
               json={"secret_id_accessor": "nope"})
    assert resp.status_code == 404
    body = resp.json()
    assert "errors" not in body and body["mount_type"] == ""
    assert body["data"] == {
        "error": 'failed to find accessor entry for secret_id_accessor: "nope"'}


def test_unknown_accessor_destroy_is_500(client: hvac.Client,
                                         approle: tuple[str, str]) -> None:
    """secret-id-accessor/destroy of an unknown accessor: Vault's plain error, a 500."""
    with pytest.raises(exceptions.InternalServerError, match="failed to find accessor entry"):
        client.auth.approle.destroy_secret_id_accessor("app", "nope")


def test_wrapped_secret_id(vault: DevVault, client: hvac.Client,
                           approle: tuple[str, str]) -> None:
    """secret-id with X-Vault-Wrap-TTL: wrap_info with the creation path and the accessor."""
    role_id, _ = approle
    info = client.auth.approle.generate_secret_id("app", wrap_ttl="2m")["wrap_info"]
    assert info["creation_path"] == "auth/approle/role/app/secret-id"
    assert info["ttl"] == 120
    data = client.sys.unwrap(info["token"])["data"]
    assert info["wrapped_accessor"] == data["secret_id_accessor"]
    assert fresh(vault).auth.approle.login(role_id, data["secret_id"])["auth"]["client_token"]
