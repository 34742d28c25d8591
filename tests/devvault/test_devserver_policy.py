"""ACL policies (vault-http-api.md §1.3): parsing, matching, denial bodies, policy endpoints."""

from __future__ import annotations

from collections.abc import Callable

import hvac
import pytest
import requests
from hvac import exceptions

Raw = Callable[..., requests.Response]
MakeClient = Callable[[str], hvac.Client]

APP_READ = """
# app may read its secrets
path "secret/data/app/*" {
  capabilities = ["read"]
}
path "secret/metadata/app/*" { capabilities = ["list"] }
"""


def login_with(client: hvac.Client, token_client: MakeClient, name: str,
               text: str) -> hvac.Client:
    client.sys.create_or_update_policy(name, text)
    token = client.auth.token.create(policies=[name], ttl="1h")["auth"]["client_token"]
    return token_client(token)


def test_glob_rule_allows_read(client: hvac.Client, token_client: MakeClient) -> None:
    """§1.3 a path "…/*" rule with read lets the token read below it."""
    client.secrets.kv.v2.create_or_update_secret(path="app/db", secret={"k": "v"})
    app = login_with(client, token_client, "app", APP_READ)
    got = app.secrets.kv.v2.read_secret_version(path="app/db", raise_on_deleted_version=True)
    assert got["data"]["data"] == {"k": "v"}


def test_denied_write_is_403_multierror(client: hvac.Client, token_client: MakeClient,
                                        raw: Raw) -> None:
    """§1.3 no capability: 403 with the multierror "permission denied" body."""
    app = login_with(client, token_client, "app", APP_READ)
    with pytest.raises(exceptions.Forbidden):
        app.secrets.kv.v2.create_or_update_secret(path="app/db", secret={"k": "v"})
    resp = raw("POST", "/v1/secret/data/app/db", json={"data": {"k": "v"}},
               token=app.token)
    assert resp.json() == {"errors": ["1 error occurred:\n\t* permission denied\n\n"]}


def test_list_needs_list_capability_on_metadata(client: hvac.Client,
                                                token_client: MakeClient) -> None:
    """§2.4 LIST is checked as list on metadata/<path>/ (trailing slash)."""
    client.secrets.kv.v2.create_or_update_secret(path="app/db/x", secret={"k": "v"})
    app = login_with(client, token_client, "app", APP_READ)
    assert app.secrets.kv.v2.list_secrets(path="app/db")["data"]["keys"] == ["x"]
    with pytest.raises(exceptions.Forbidden):
        app.secrets.kv.v2.list_secrets(path="")


def test_plus_matches_exactly_one_segment(client: hvac.Client,
                                          token_client: MakeClient) -> None:
    """§1.3 "+" matches one path segment, not more."""
    for path in ("team/a/config", "team/a/b/config"):
        client.secrets.kv.v2.create_or_update_secret(path=path, secret={"k": "v"})
    app = login_with(client, token_client, "plus",
                     'path "secret/data/team/+/config" { capabilities = ["read"] }')
    app.secrets.kv.v2.read_secret_version(path="team/a/config", raise_on_deleted_version=True)
    with pytest.raises(exceptions.Forbidden):
        app.secrets.kv.v2.read_secret_version(path="team/a/b/config",
                                              raise_on_deleted_version=True)


def test_deny_overrides_other_capabilities(client: hvac.Client,
                                           token_client: MakeClient) -> None:
    """§1.3 deny on the most specific path wins over a broader allow."""
    client.secrets.kv.v2.create_or_update_secret(path="app/root-pw", secret={"k": "v"})
    app = login_with(client, token_client, "app", APP_READ + (
        'path "secret/data/app/root-pw" { capabilities = ["deny"] }'))
    with pytest.raises(exceptions.Forbidden):
        app.secrets.kv.v2.read_secret_version(path="app/root-pw", raise_on_deleted_version=True)


def test_rules_merge_across_policies(client: hvac.Client, token_client: MakeClient) -> None:
    """§1.3 the same path in two policies: capabilities are unioned."""
    client.sys.create_or_update_policy("r", 'path "secret/data/x" { capabilities = ["read"] }')
    client.sys.create_or_update_policy("w", 'path "secret/data/x" { capabilities = '
                                            '["update", "create"] }')
    token = client.auth.token.create(policies=["r", "w"], ttl="1h")["auth"]["client_token"]
    user = token_client(token)
    user.secrets.kv.v2.create_or_update_secret(path="x", secret={"k": "v"})
    user.secrets.kv.v2.read_secret_version(path="x", raise_on_deleted_version=True)


def test_default_policy_allows_self_service_only(client: hvac.Client,
                                                 token_client: MakeClient) -> None:
    """default allows token lookup/renew/revoke-self but no secrets."""
    token = client.auth.token.create(policies=["default"], ttl="1h")["auth"]["client_token"]
    user = token_client(token)
    user.auth.token.lookup_self()
    user.auth.token.renew_self()
    with pytest.raises(exceptions.Forbidden):
        user.secrets.kv.v2.read_secret_version(path="x", raise_on_deleted_version=True)


def test_json_policy_from_hvac_dict(client: hvac.Client, token_client: MakeClient) -> None:
    """hvac sends dict policies as JSON; they work like HCL."""
    client.secrets.kv.v2.create_or_update_secret(path="j", secret={"k": "v"})
    policy = {"path": {"secret/data/j": {"capabilities": ["read"]}}}
    app = login_with(client, token_client, "json", policy)  # type: ignore[arg-type]
    app.secrets.kv.v2.read_secret_version(path="j", raise_on_deleted_version=True)


def test_policy_read_copies_data_to_top(client: hvac.Client) -> None:
    """§1.2 sys/policy/{name} returns name and rules, also at the top level."""
    client.sys.create_or_update_policy("app", APP_READ)
    got = client.sys.read_policy("app")
    assert got["data"] == {"name": "app", "rules": APP_READ}
    assert got["rules"] == APP_READ


def test_acl_policy_endpoint(client: hvac.Client) -> None:
    """sys/policies/acl/{name} writes and reads the policy text under "policy"."""
    client.sys.create_or_update_acl_policy("app", APP_READ)
    assert client.sys.read_acl_policy("app")["data"]["policy"] == APP_READ
    assert "app" in client.sys.list_acl_policies()["data"]["keys"]


def test_invalid_policy_is_400(client: hvac.Client) -> None:
    """A policy that does not parse is 400 "failed to parse policy"."""
    with pytest.raises(exceptions.InvalidRequest, match="failed to parse policy"):
        client.sys.create_or_update_policy("bad", 'path "x" { capabilities = ["fly"] }')


def test_root_policy_cannot_be_written(client: hvac.Client) -> None:
    """The root policy is immutable."""
    with pytest.raises(exceptions.InvalidRequest, match='cannot update "root" policy'):
        client.sys.create_or_update_policy("root", 'path "x" { capabilities = ["read"] }')


def test_deleted_policy_is_404(client: hvac.Client) -> None:
    """Deleting a policy is 204; reading it afterwards is 404."""
    client.sys.create_or_update_policy("tmp", APP_READ)
    assert client.sys.delete_policy("tmp").status_code == 204
    with pytest.raises(exceptions.InvalidPath):
        client.sys.read_policy("tmp")


def test_capabilities_self(client: hvac.Client, token_client: MakeClient) -> None:
    """sys/capabilities-self reports the token's capabilities on a path."""
    app = login_with(client, token_client, "app", APP_READ)
    got = app.adapter.post("/v1/sys/capabilities-self", json={"paths": ["secret/data/app/x"]})
    assert got["capabilities"] == ["read"]
    assert got["data"]["secret/data/app/x"] == ["read"]


def test_seal_needs_sudo(client: hvac.Client, token_client: MakeClient) -> None:
    """sys/seal is root-protected: update without sudo is denied."""
    op = login_with(client, token_client, "op", 'path "sys/seal" { capabilities = ["update"] }')
    with pytest.raises(exceptions.Forbidden):
        op.sys.seal()
    assert not client.sys.is_sealed()
