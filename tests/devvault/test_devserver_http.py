"""Wire rules (vault-http-api.md §0 and §1): headers, bodies, verbs, tokens, namespaces."""

from __future__ import annotations

import json
from collections.abc import Callable

import hvac
import pytest
import requests
from hvac import exceptions

from devvault import DevVault

Raw = Callable[..., requests.Response]

ENVELOPE_KEYS = ["request_id", "lease_id", "renewable", "lease_duration", "data", "wrap_info",
                 "warnings", "auth", "mount_type"]


def test_json_reply_has_exact_content_type_and_no_store(raw: Raw) -> None:
    """§0 every JSON reply is exactly application/json (no charset) with Cache-Control no-store."""
    resp = raw("GET", "/v1/auth/token/lookup-self")
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == "application/json"
    assert resp.headers["Cache-Control"] == "no-store"


def test_no_content_reply_still_sends_json_content_type(raw: Raw) -> None:
    """§0 a 204 has no body but still carries Content-Type: application/json."""
    resp = raw("POST", "/v1/secret/metadata/app", json={"max_versions": 3})
    assert resp.status_code == 204
    assert resp.content == b""
    assert resp.headers["Content-Type"] == "application/json"
    assert resp.headers["Cache-Control"] == "no-store"


def test_body_is_compact_go_json_in_struct_order(raw: Raw) -> None:
    """§0/§1.2 body is compact, ends in a newline, envelope fields in HTTPResponse order."""
    raw("POST", "/v1/secret/data/app", json={"data": {"b": "2", "a": "1"}})
    resp = raw("GET", "/v1/secret/data/app")
    assert resp.text.endswith("}\n")
    assert ": " not in resp.text and ", " not in resp.text
    assert list(json.loads(resp.text)) == ENVELOPE_KEYS
    assert '"data":{"a":"1","b":"2"}' in resp.text


def test_html_characters_are_escaped_like_go(raw: Raw) -> None:
    """§0 Go's encoder escapes <, > and & inside strings."""
    raw("POST", "/v1/secret/data/app", json={"data": {"v": "<a&b>"}})
    resp = raw("GET", "/v1/secret/data/app")
    assert "\\u003ca\\u0026b\\u003e" in resp.text
    assert resp.json()["data"]["data"]["v"] == "<a&b>"


def test_path_outside_v1_is_404_with_empty_errors(raw: Raw) -> None:
    """§0 any non-/v1/ path is 404 {"errors":[]}."""
    resp = raw("GET", "/ui/secret")
    assert resp.status_code == 404
    assert resp.text == '{"errors":[]}\n'
    assert resp.headers["Content-Type"] == "application/json"


def test_list_verb_and_get_list_true_are_the_same(raw: Raw) -> None:
    """§0 LIST and GET ?list=true both list."""
    raw("POST", "/v1/secret/data/app/db", json={"data": {"k": "v"}})
    by_verb = raw("LIST", "/v1/secret/metadata/app")
    by_query = raw("GET", "/v1/secret/metadata/app", params={"list": "true"})
    assert by_verb.status_code == by_query.status_code == 200
    assert by_verb.json()["data"] == by_query.json()["data"] == {"keys": ["db"]}


def test_strict_http_hvac_lists_with_get(vault: DevVault) -> None:
    """§0 hvac with strict_http=True sends GET ?list=true and gets the listing."""
    c = hvac.Client(url=vault.address, token=vault.root_token, strict_http=True)
    c.secrets.kv.v2.create_or_update_secret(path="a/b", secret={"k": "v"})
    assert c.secrets.kv.v2.list_secrets(path="a")["data"]["keys"] == ["b"]


def test_list_without_trailing_slash_is_the_root_listing(raw: Raw) -> None:
    """§0 LIST /v1/secret/metadata (slash stripped by hvac) lists the mount root."""
    raw("POST", "/v1/secret/data/top", json={"data": {"k": "v"}})
    resp = raw("LIST", "/v1/secret/metadata")
    assert resp.json()["data"]["keys"] == ["top"]


def test_put_is_the_same_as_post(raw: Raw) -> None:
    """§0 PUT and POST are both the update operation."""
    assert raw("PUT", "/v1/secret/data/app", json={"data": {"k": "v"}}).status_code == 200
    assert raw("GET", "/v1/secret/data/app").json()["data"]["data"] == {"k": "v"}


def test_empty_post_body_is_accepted(raw: Raw, client: hvac.Client) -> None:
    """§0 an empty POST body is no data (revoke-self sends none)."""
    token = client.auth.token.create(ttl="1h")["auth"]["client_token"]
    resp = raw("POST", "/v1/auth/token/revoke-self", token=token)
    assert resp.status_code == 204


def test_json_null_optional_field_is_accepted(raw: Raw, client: hvac.Client) -> None:
    """§0 JSON null for an optional field (hvac sends increment: null to renew)."""
    lease_id = client.secrets.database.generate_credentials("dev")["lease_id"]
    resp = raw("PUT", "/v1/sys/leases/renew", json={"lease_id": lease_id, "increment": None})
    assert resp.status_code == 200
    assert resp.json()["lease_id"] == lease_id


def test_form_encoded_body_is_accepted(raw: Raw) -> None:
    """§0 form-encoded bodies are read as data."""
    raw("POST", "/v1/sys/mounts/kv-form", json={"type": "kv"})
    assert raw("POST", "/v1/kv-form/x", data={"k": "v"}).status_code == 204
    assert raw("GET", "/v1/kv-form/x").json()["data"] == {"k": "v"}


def test_invalid_json_body_is_400(raw: Raw) -> None:
    """§1.3 an unparseable JSON body is a 400 with an errors list."""
    resp = raw("POST", "/v1/secret/data/app", data="{not json",
                headers={"Content-Type": "application/json"})
    assert resp.status_code == 400
    assert resp.json()["errors"][0].startswith("failed to parse JSON input")


def test_bearer_authorization_header_is_a_token(raw: Raw) -> None:
    """§1.1 Authorization: Bearer is accepted as the client token."""
    resp = raw("GET", "/v1/auth/token/lookup-self", token="",
               headers={"Authorization": "Bearer root"})
    assert resp.status_code == 200


def test_x_vault_token_wins_over_bearer(raw: Raw) -> None:
    """§1.1 X-Vault-Token wins when both are sent."""
    resp = raw("GET", "/v1/auth/token/lookup-self", token="bogus",
               headers={"Authorization": "Bearer root"})
    assert resp.status_code == 403


def test_missing_token_is_403_permission_denied(raw: Raw) -> None:
    """§1.3 no token on an authenticated path is 403 permission denied."""
    resp = raw("GET", "/v1/secret/data/app", token="")
    assert resp.status_code == 403
    assert resp.json() == {"errors": ["permission denied"]}


def test_unknown_mount_with_root_is_404_no_handler(client: hvac.Client) -> None:
    """§1.3 an unknown mount with the root token is 404 "no handler for route"."""
    with pytest.raises(exceptions.InvalidPath) as info:
        client.adapter.get("/v1/typo/data/x")
    assert info.value.errors == ['no handler for route "typo/data/x". route entry not found.']


def test_client_read_returns_none_on_404(client: hvac.Client) -> None:
    """§8 Client.read returns None on a 404."""
    assert client.read("secret/data/absent") is None


def test_namespace_header_isolates_secret_mounts(vault: DevVault) -> None:
    """§1.1 X-Vault-Namespace gets its own secret/ mount table (separate data)."""
    team = hvac.Client(url=vault.address, token=vault.root_token, namespace="team-a")
    root = hvac.Client(url=vault.address, token=vault.root_token)
    root.sys.create_namespace("team-a")
    team.sys.enable_secrets_engine("kv", path="secret", options={"version": "2"})
    team.secrets.kv.v2.create_or_update_secret(path="app", secret={"k": "team"})
    with pytest.raises(exceptions.InvalidPath):
        root.secrets.kv.v2.read_secret_version(path="app", raise_on_deleted_version=True)
    got = team.secrets.kv.v2.read_secret_version(path="app", raise_on_deleted_version=True)
    assert got["data"]["data"] == {"k": "team"}


def test_root_namespace_header_is_a_no_op(vault: DevVault, client: hvac.Client) -> None:
    """§1.1 sending X-Vault-Namespace: root changes nothing."""
    client.secrets.kv.v2.create_or_update_secret(path="app", secret={"k": "v"})
    rooted = hvac.Client(url=vault.address, token=vault.root_token, namespace="root")
    got = rooted.secrets.kv.v2.read_secret_version(path="app", raise_on_deleted_version=True)
    assert got["data"]["data"] == {"k": "v"}


def test_vault_request_header_is_ignored(raw: Raw) -> None:
    """§1.1 X-Vault-Request: true is ignored by the server."""
    resp = raw("GET", "/v1/auth/token/lookup-self", headers={"X-Vault-Request": "true"})
    assert resp.status_code == 200


def test_bad_wrap_ttl_is_400(raw: Raw) -> None:
    """§1.1 an unparseable X-Vault-Wrap-TTL: 400 "error parsing X-Vault-Wrap-TTL header: …"."""
    resp = raw("GET", "/v1/secret/data/app", headers={"X-Vault-Wrap-TTL": "soon"})
    assert resp.status_code == 400
    assert resp.json()["errors"][0].startswith("error parsing X-Vault-Wrap-TTL header: ")


def test_unexpected_verb_is_rejected(raw: Raw) -> None:
    """§1.3 an HTTP method Vault does not know is 405 with a JSON error body."""
    resp = raw("OPTIONS", "/v1/secret/data/app")
    assert resp.status_code == 405
    assert resp.headers["Content-Type"] == "application/json"


def test_token_client_fixture_uses_its_token(token_client: Callable[[str], hvac.Client],
                                             client: hvac.Client) -> None:
    """§4.1 a created token authenticates on its own (hvac is_authenticated)."""
    token = client.auth.token.create(policies=["default"], ttl="1h")["auth"]["client_token"]
    assert token_client(token).is_authenticated()
    assert not token_client("hvs.bogus").is_authenticated()
