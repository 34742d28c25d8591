"""ACL policies (vault-http-api.md §1.3): parsing, matching, denial bodies, policy endpoints."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

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


# --- parameter constraints (Vault's ACL.AllowOperation) --------------------------------------------


@pytest.fixture
def kv1(client: hvac.Client) -> str:
    """A KV v1 mount, whose write parameters are the secret's own keys."""
    client.sys.enable_secrets_engine("kv", path="kv1", options={"version": "1"})
    return "kv1"


def writer(client: hvac.Client, token_client: MakeClient, rules: str) -> Callable[..., None]:
    app = login_with(client, token_client, "constrained", rules)

    def write(**secret: Any) -> None:
        app.secrets.kv.v1.create_or_update_secret(path="app", secret=secret, method="PUT", mount_point="kv1")

    return write


def test_required_parameters_must_be_there(client: hvac.Client, token_client: MakeClient, kv1: str) -> None:
    write = writer(client, token_client, 'path "kv1/app" { capabilities = ["create", "update"]\n'
                                         '  required_parameters = ["owner"] }')
    write(owner="team", x="1")
    with pytest.raises(exceptions.Forbidden):
        write(x="1")


def test_denied_parameters_by_key_and_by_value(client: hvac.Client, token_client: MakeClient,
                                               kv1: str) -> None:
    write = writer(client, token_client, """path "kv1/app" {
  capabilities = ["create", "update"]
  denied_parameters = { "password" = [], "env" = ["prod", "stag*"] }
}""")
    write(user="u", env="dev")
    for bad in ({"password": "p"}, {"env": "prod"}, {"env": "staging"}):
        with pytest.raises(exceptions.Forbidden):
            write(user="u", **bad)


def test_denied_star_denies_any_parameter(client: hvac.Client, token_client: MakeClient, kv1: str) -> None:
    write = writer(client, token_client, 'path "kv1/app" { capabilities = ["update", "create"]\n'
                                         '  denied_parameters = { "*" = [] } }')
    with pytest.raises(exceptions.Forbidden):
        write(anything="x")


def test_allowed_parameters_keys_values_and_globs(client: hvac.Client, token_client: MakeClient,
                                                  kv1: str) -> None:
    """Every key must be allowed; a listed value must match, `*` at either end a glob; keys are
    compared lowercased."""
    write = writer(client, token_client, """path "kv1/app" {
  capabilities = ["create", "update"]
  allowed_parameters = { user = [], "env" = ["dev-*", "*-test", "exact"] }
}""")
    for good in ({"user": "u"}, {"env": "dev-1"}, {"env": "a-test"}, {"env": "exact"}, {"USER": "u"}):
        write(**good)
    for bad in ({"env": "prod"}, {"env": "exact2"}, {"other": "x"}, {"user": "u", "other": "x"}):
        with pytest.raises(exceptions.Forbidden):
            write(**bad)


def test_allowed_star_with_listed_keys(client: hvac.Client, token_client: MakeClient, kv1: str) -> None:
    """With "*" allowed, any key passes, but a listed key still needs a listed value."""
    write = writer(client, token_client, """path "kv1/app" {
  capabilities = ["create", "update"]
  allowed_parameters = { "*" = [], "env" = ["dev"] }
}""")
    write(anything="x", env="dev")
    with pytest.raises(exceptions.Forbidden):
        write(anything="x", env="prod")


def test_constraints_merge_across_policies(client: hvac.Client, token_client: MakeClient, kv1: str) -> None:
    """A policy that allows the path without constraints does not lift another one's: the merge
    keeps the allowed list (and joins value lists)."""
    client.sys.create_or_update_policy("open", 'path "kv1/app" { capabilities = ["create", "update"] }')
    client.sys.create_or_update_policy("narrow", 'path "kv1/app" { capabilities = ["update"]\n'
                                                 '  allowed_parameters = { "env" = ["dev"] } }')
    client.sys.create_or_update_policy("wider", 'path "kv1/app" { capabilities = ["update"]\n'
                                                '  allowed_parameters = { "env" = ["test"] } }')
    token = client.auth.token.create(policies=["open", "narrow", "wider"], ttl="1h")["auth"]["client_token"]
    app = token_client(token)
    for env in ("dev", "test"):
        app.secrets.kv.v1.create_or_update_secret(path="app", secret={"env": env}, method="PUT", mount_point="kv1")
    with pytest.raises(exceptions.Forbidden):
        app.secrets.kv.v1.create_or_update_secret(path="app", secret={"user": "u"}, method="PUT", mount_point="kv1")


def test_reads_are_checked_against_their_query(client: hvac.Client, token_client: MakeClient) -> None:
    """A read's query parameters are its data: KV v2 reads of a version other than the allowed one are denied."""
    client.secrets.kv.v2.create_or_update_secret(path="q", secret={"k": "1"})
    client.secrets.kv.v2.create_or_update_secret(path="q", secret={"k": "2"})
    app = login_with(client, token_client, "q", 'path "secret/data/q" { capabilities = ["read"]\n'
                                                '  allowed_parameters = { "version" = ["1"] } }')
    assert app.secrets.kv.v2.read_secret_version(path="q", version=1, raise_on_deleted_version=True)
    assert app.secrets.kv.v2.read_secret_version(path="q", raise_on_deleted_version=True)
    with pytest.raises(exceptions.Forbidden):
        app.secrets.kv.v2.read_secret_version(path="q", version=2, raise_on_deleted_version=True)


def test_a_key_vault_does_not_know_is_refused(client: hvac.Client) -> None:
    with pytest.raises(exceptions.InvalidRequest, match='path "x": invalid key "capability"'):
        client.sys.create_or_update_policy("bad", 'path "x" { capability = ["read"] }')


def test_keys_this_server_does_not_enforce_are_refused_not_ignored(client: hvac.Client) -> None:
    """min_wrapping_ttl and the like would be accepted by Vault and enforced; here they are a 400
    that says so, never silently more permissive."""
    for key, value in (("min_wrapping_ttl", '"1m"'), ("max_wrapping_ttl", "300"), ("mfa_methods", '["m"]')):
        with pytest.raises(exceptions.InvalidRequest, match=f"{key} is not enforced by this dev server"):
            client.sys.create_or_update_policy("bad", f'path "x" {{ capabilities = ["read"]\n {key} = {value} }}')
    policy = {"path": {"x": {"capabilities": ["read"], "allowed_parameters": {"/a/b": []}}}}
    with pytest.raises(exceptions.InvalidRequest, match="JSON pointer keys"):
        client.sys.create_or_update_policy("bad", policy)  # type: ignore[arg-type]


def test_a_comment_is_accepted(client: hvac.Client, token_client: MakeClient) -> None:
    client.sys.create_or_update_policy("c", 'path "secret/data/c" { comment = "why"\n capabilities = ["read"] }')


def test_a_required_name_is_matched_lowercased_against_the_keys_as_sent(
    client: hvac.Client, token_client: MakeClient, kv1: str
) -> None:
    """Vault lowercases the required name, not the request's keys: "Owner" is satisfied by
    "owner" and not by "OWNER"."""
    write = writer(client, token_client, 'path "kv1/app" { capabilities = ["create", "update"]\n'
                                         '  required_parameters = ["Owner"] }')
    write(owner="team")
    with pytest.raises(exceptions.Forbidden):
        write(OWNER="team")


def test_listed_values_other_than_strings(client: hvac.Client, token_client: MakeClient, kv1: str) -> None:
    """Booleans compare as they are; a number in a request body never equals a policy's number
    (Vault reads it as a JSON number string)."""
    write = writer(client, token_client, """path "kv1/app" {
  capabilities = ["create", "update"]
  allowed_parameters = { "on" = [true], "n" = [3] }
}""")
    write(on=True)
    for bad in ({"on": False}, {"on": "true"}, {"n": 3}):
        with pytest.raises(exceptions.Forbidden):
            write(**bad)


@pytest.mark.parametrize("block", [
    'allowed_parameters = "x"',
    'denied_parameters = ["x"]',
    'required_parameters = "x"',
    'allowed_parameters = { "a*b" = [] }',
])
def test_malformed_constraints_are_400_and_keep_the_old_policy(client: hvac.Client, block: str) -> None:
    client.sys.create_or_update_policy("p", 'path "x" { capabilities = ["read"] }')
    with pytest.raises(exceptions.InvalidRequest, match='failed to parse policy: path "x"'):
        client.sys.create_or_update_policy("p", f'path "x" {{ capabilities = ["read"]\n {block} }}')
    assert client.sys.read_policy("p")["rules"] == 'path "x" { capabilities = ["read"] }'
