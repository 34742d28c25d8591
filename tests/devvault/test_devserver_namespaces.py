"""Namespaces (Vault Enterprise / HCP semantics): sys/namespaces, the header, the path prefix,
and tokens, policies, auth methods and leases isolated per namespace."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import hvac
import pytest
import requests
from hvac import exceptions

from devvault import DevVault

Raw = Callable[..., requests.Response]
InNamespace = Callable[..., hvac.Client]


@pytest.fixture
def in_ns(vault: DevVault) -> Iterator[InNamespace]:
    """Makes hvac clients for a namespace (root token unless another is given)."""
    made: list[hvac.Client] = []

    def make(namespace: str, token: str | None = None) -> hvac.Client:
        made.append(hvac.Client(url=vault.address,
                                token=vault.root_token if token is None else token,
                                namespace=namespace))
        return made[-1]

    yield make
    for c in made:
        c.adapter.close()


@pytest.fixture
def ns1(client: hvac.Client, in_ns: InNamespace) -> hvac.Client:
    """Namespace ns1 with KV v2 at secret/ holding secret/app = {"k": "ns1"}."""
    client.sys.create_namespace("ns1")
    c = in_ns("ns1")
    c.sys.enable_secrets_engine("kv", path="secret", options={"version": "2"})
    c.secrets.kv.v2.create_or_update_secret(path="app", secret={"k": "ns1"})
    return c


def read(c: hvac.Client, path: str = "app") -> dict[str, str]:
    got = c.secrets.kv.v2.read_secret_version(path=path, raise_on_deleted_version=True)
    return dict(got["data"]["data"])


def test_create_read_list_delete(client: hvac.Client) -> None:
    """sys/namespaces: create returns id and path "ns1/"; LIST keys and key_info; DELETE."""
    created = client.sys.create_namespace("ns1")["data"]
    assert created["path"] == "ns1/" and created["id"]
    assert client.read("sys/namespaces/ns1")["data"] == created
    listed = client.sys.list_namespaces()["data"]
    assert listed["keys"] == ["ns1/"] and listed["key_info"]["ns1/"] == created
    assert client.sys.delete_namespace("ns1").status_code == 204
    assert client.read("sys/namespaces/ns1") is None


def test_list_without_namespaces_is_404(raw: Raw) -> None:
    """LIST sys/namespaces with none: 404 {"errors":[]}."""
    resp = raw("LIST", "/v1/sys/namespaces")
    assert resp.status_code == 404 and resp.json() == {"errors": []}


def test_nested_namespaces(client: hvac.Client, in_ns: InNamespace) -> None:
    """ns1/ns2 created inside ns1 (header) shows path "ns1/ns2/"; ns1 lists "ns2/"."""
    client.sys.create_namespace("ns1")
    child = in_ns("ns1").sys.create_namespace("ns2")["data"]
    assert child["path"] == "ns1/ns2/"
    assert in_ns("ns1").sys.list_namespaces()["data"]["keys"] == ["ns2/"]
    assert client.sys.list_namespaces()["data"]["keys"] == ["ns1/"]
    assert client.sys.create_namespace("ns1/ns3")["data"]["path"] == "ns1/ns3/"


def test_parent_with_children_cannot_be_deleted(client: hvac.Client) -> None:
    """Deleting a namespace that has child namespaces: 400."""
    client.sys.create_namespace("ns1")
    client.sys.create_namespace("ns1/ns2")
    with pytest.raises(exceptions.InvalidRequest, match="containing child namespaces"):
        client.sys.delete_namespace("ns1")


def test_reserved_name_is_400(client: hvac.Client) -> None:
    """A namespace cannot be called sys, auth, root…: 400."""
    with pytest.raises(exceptions.InvalidRequest, match="reserved"):
        client.sys.create_namespace("sys")


def test_unknown_namespace_header_is_404(raw: Raw) -> None:
    """A request in a namespace that does not exist: 404."""
    resp = raw("GET", "/v1/secret/data/app", headers={"X-Vault-Namespace": "nope"})
    assert resp.status_code == 404


def test_secrets_are_isolated(client: hvac.Client, ns1: hvac.Client) -> None:
    """ns1's secret/ is its own: the root namespace's secret/ does not have its data."""
    assert read(ns1) == {"k": "ns1"}
    with pytest.raises(exceptions.InvalidPath):
        read(client)


def test_new_namespace_has_no_secret_mount(client: hvac.Client, in_ns: InNamespace) -> None:
    """A new namespace has token/ and sys/ but no secret/ (as in Vault)."""
    client.sys.create_namespace("ns1")
    mounts = in_ns("ns1").sys.list_mounted_secrets_engines()["data"]
    assert "secret/" not in mounts and "sys/" in mounts
    assert list(in_ns("ns1").sys.list_auth_methods()["data"]) == ["token/"]


def test_path_prefix_form(raw: Raw, ns1: hvac.Client) -> None:
    """/v1/ns1/secret/data/app is ns1's secret, same as the header form."""
    resp = raw("GET", "/v1/ns1/secret/data/app")
    assert resp.status_code == 200 and resp.json()["data"]["data"] == {"k": "ns1"}


def test_header_and_path_prefix_combine(client: hvac.Client, in_ns: InNamespace,
                                        raw: Raw) -> None:
    """X-Vault-Namespace: ns1 + /v1/ns2/… addresses ns1/ns2."""
    client.sys.create_namespace("ns1")
    client.sys.create_namespace("ns1/ns2")
    deep = in_ns("ns1/ns2")
    deep.sys.enable_secrets_engine("kv", path="kv", options={"version": "2"})
    deep.secrets.kv.v2.create_or_update_secret(path="x", secret={"k": "deep"}, mount_point="kv")
    resp = raw("GET", "/v1/ns2/kv/data/x", headers={"X-Vault-Namespace": "ns1"})
    assert resp.json()["data"]["data"] == {"k": "deep"}
    assert raw("GET", "/v1/ns1/ns2/kv/data/x").json()["data"]["data"] == {"k": "deep"}


def test_namespace_token_works_there_and_in_children(ns1: hvac.Client,
                                                     in_ns: InNamespace) -> None:
    """A token created in ns1 works in ns1 and, by its ns1 policy, in the child ns1/ns2."""
    ns1.sys.create_namespace("ns2")
    child = in_ns("ns1/ns2")
    child.sys.enable_secrets_engine("kv", path="secret", options={"version": "2"})
    child.secrets.kv.v2.create_or_update_secret(path="app", secret={"k": "ns2"})
    ns1.sys.create_or_update_policy("kids", 'path "ns2/secret/data/*" '
                                            '{ capabilities = ["read"] }')
    token = ns1.auth.token.create(policies=["kids"])["auth"]["client_token"]
    assert in_ns("ns1", token).auth.token.lookup_self()["data"]["namespace_path"] == "ns1/"
    assert read(in_ns("ns1/ns2", token)) == {"k": "ns2"}


def test_namespace_token_at_root_is_403(vault: DevVault, ns1: hvac.Client,
                                        token_client: Callable[[str], hvac.Client]) -> None:
    """An ns1 token used in the root namespace: 403 permission denied."""
    token = ns1.auth.token.create(policies=["default"])["auth"]["client_token"]
    with pytest.raises(exceptions.Forbidden):
        token_client(token).auth.token.lookup_self()


def test_root_token_acts_in_any_namespace(ns1: hvac.Client) -> None:
    """The root namespace's root token reads and writes in ns1."""
    assert read(ns1) == {"k": "ns1"}


def test_policies_are_per_namespace(client: hvac.Client, ns1: hvac.Client,
                                    in_ns: InNamespace) -> None:
    """A policy written in ns1 exists only there, and grants paths of ns1 to ns1 tokens."""
    ns1.sys.create_or_update_policy("reader", 'path "secret/data/*" '
                                              '{ capabilities = ["read"] }')
    assert "reader" in ns1.sys.list_policies()["data"]["policies"]
    assert "reader" not in client.sys.list_policies()["data"]["policies"]
    token = ns1.auth.token.create(policies=["reader"])["auth"]["client_token"]
    assert read(in_ns("ns1", token)) == {"k": "ns1"}
    root_token = client.auth.token.create(policies=["reader"])["auth"]["client_token"]
    with pytest.raises(exceptions.Forbidden):
        read(in_ns("ns1", root_token))


def test_parent_policy_covers_child_paths(client: hvac.Client, in_ns: InNamespace) -> None:
    """A root-namespace policy on "ns1/secret/data/*" lets its token read ns1's secret."""
    client.sys.create_namespace("ns1")
    in_ns("ns1").sys.enable_secrets_engine("kv", path="secret", options={"version": "2"})
    in_ns("ns1").secrets.kv.v2.create_or_update_secret(path="app", secret={"k": "v"})
    client.sys.create_or_update_policy("child", 'path "ns1/secret/data/*" '
                                                '{ capabilities = ["read"] }')
    token = client.auth.token.create(policies=["child"])["auth"]["client_token"]
    assert read(in_ns("ns1", token)) == {"k": "v"}


def test_auth_methods_are_per_namespace(vault: DevVault, ns1: hvac.Client,
                                        in_ns: InNamespace) -> None:
    """AppRole enabled in ns1 logs in there; its token lives in ns1; root has no approle/."""
    ns1.sys.enable_auth_method("approle")
    ns1.auth.approle.create_or_update_approle("app", token_policies=["default"])
    role_id = ns1.auth.approle.read_role_id("app")["data"]["role_id"]
    secret_id = ns1.auth.approle.generate_secret_id("app")["data"]["secret_id"]
    anon = in_ns("ns1", "")
    auth = anon.auth.approle.login(role_id, secret_id)["auth"]
    data = in_ns("ns1", auth["client_token"]).auth.token.lookup_self()["data"]
    assert data["namespace_path"] == "ns1/" and data["path"] == "auth/approle/login"
    with pytest.raises(exceptions.Forbidden):  # no approle/ at root: an unknown, guarded path
        hvac.Client(url=vault.address).auth.approle.login(role_id, secret_id)


def test_leases_are_per_namespace(client: hvac.Client, ns1: hvac.Client) -> None:
    """A lease from ns1 ends in .<ns id>; ns1 sees it, the root namespace does not."""
    ns1.sys.enable_secrets_engine("database", path="database")
    ns1.secrets.database.create_role("r", db_name="dev", creation_statements=["x"])
    ns_id = client.read("sys/namespaces/ns1")["data"]["id"]
    lease_id = ns1.secrets.database.generate_credentials("r")["lease_id"]
    assert lease_id.startswith("database/creds/r/") and lease_id.endswith("." + ns_id)
    assert ns1.sys.read_lease(lease_id)["data"]["id"] == lease_id
    with pytest.raises(exceptions.InvalidRequest, match="invalid lease"):
        client.sys.read_lease(lease_id)
    assert ns1.sys.list_leases("database/creds/r")["data"]["keys"]


def test_deleting_a_namespace_revokes_its_tokens(client: hvac.Client, ns1: hvac.Client,
                                                 in_ns: InNamespace) -> None:
    """Deleting ns1 revokes the tokens created in it."""
    token = ns1.auth.token.create(policies=["default"])["auth"]["client_token"]
    client.sys.delete_namespace("ns1")
    with pytest.raises(exceptions.Forbidden):
        client.auth.token.lookup(token)
