"""KV version 2 (vault-http-api.md §2)."""

from __future__ import annotations

import json
from collections.abc import Callable

import hvac
import pytest
import requests
from hvac import exceptions

Raw = Callable[..., requests.Response]


def test_read_latest_version(client: hvac.Client) -> None:
    """§2.1 a read returns data.data and data.metadata with the latest version."""
    client.secrets.kv.v2.create_or_update_secret(path="app", secret={"v": "1"})
    client.secrets.kv.v2.create_or_update_secret(path="app", secret={"v": "2"})
    got = client.secrets.kv.v2.read_secret_version(path="app", raise_on_deleted_version=True)
    assert got["data"]["data"] == {"v": "2"}
    meta = got["data"]["metadata"]
    assert meta["version"] == 2 and meta["deletion_time"] == "" and meta["destroyed"] is False
    assert meta["custom_metadata"] is None and meta["created_time"].endswith("Z")
    assert (got["lease_id"], got["renewable"], got["lease_duration"]) == ("", False, 0)
    assert got["mount_type"] == "kv"


def test_read_by_version(client: hvac.Client) -> None:
    """§2.1 ?version=N reads that version."""
    client.secrets.kv.v2.create_or_update_secret(path="app", secret={"v": "1"})
    client.secrets.kv.v2.create_or_update_secret(path="app", secret={"v": "2"})
    got = client.secrets.kv.v2.read_secret_version(path="app", version=1,
                                                   raise_on_deleted_version=True)
    assert got["data"]["data"] == {"v": "1"}


def test_missing_path_is_404_with_empty_errors(client: hvac.Client, raw: Raw) -> None:
    """§2.1 an absent path is 404 {"errors":[]} (hvac InvalidPath)."""
    with pytest.raises(exceptions.InvalidPath):
        client.secrets.kv.v2.read_secret_version(path="absent", raise_on_deleted_version=True)
    resp = raw("GET", "/v1/secret/data/absent")
    assert (resp.status_code, resp.text) == (404, '{"errors":[]}\n')


def test_unknown_version_is_404_with_empty_errors(raw: Raw) -> None:
    """§2.1 a version number that never existed is 404 {"errors":[]}."""
    raw("POST", "/v1/secret/data/app", json={"data": {"v": "1"}})
    resp = raw("GET", "/v1/secret/data/app", params={"version": 7})
    assert (resp.status_code, resp.json()) == (404, {"errors": []})


def test_deleted_version_is_404_with_envelope_and_no_errors_key(raw: Raw) -> None:
    """§2.1 a soft-deleted version is 404 with the raw envelope: no errors key, mount_type ""."""
    raw("POST", "/v1/secret/data/app", json={"data": {"v": "1"}})
    raw("DELETE", "/v1/secret/data/app")
    resp = raw("GET", "/v1/secret/data/app")
    assert resp.status_code == 404
    assert resp.headers["Content-Type"] == "application/json"
    body = resp.json()
    assert "errors" not in body
    assert body["data"]["data"] is None
    assert body["data"]["metadata"]["deletion_time"] != ""
    assert body["mount_type"] == ""
    assert not resp.text.endswith("\n")  # json.Marshal inside the plugin, not the encoder


def test_hvac_returns_deleted_version_when_asked(client: hvac.Client) -> None:
    """§2.1 raise_on_deleted_version=False returns the deleted version's envelope."""
    client.secrets.kv.v2.create_or_update_secret(path="app", secret={"v": "1"})
    client.secrets.kv.v2.delete_latest_version_of_secret(path="app")
    got = client.secrets.kv.v2.read_secret_version(path="app", raise_on_deleted_version=False)
    assert got["data"]["data"] is None
    assert got["data"]["metadata"]["deletion_time"] != ""


def test_hvac_raises_on_deleted_version_by_default(client: hvac.Client) -> None:
    """§2.1 raise_on_deleted_version=True raises InvalidPath for a deleted version."""
    client.secrets.kv.v2.create_or_update_secret(path="app", secret={"v": "1"})
    client.secrets.kv.v2.delete_latest_version_of_secret(path="app")
    with pytest.raises(exceptions.InvalidPath):
        client.secrets.kv.v2.read_secret_version(path="app", raise_on_deleted_version=True)


def test_destroyed_version_still_raises_in_hvac(client: hvac.Client, raw: Raw) -> None:
    """§2.1 a destroyed (never deleted) version: envelope with destroyed true, hvac raises."""
    client.secrets.kv.v2.create_or_update_secret(path="app", secret={"v": "1"})
    client.secrets.kv.v2.destroy_secret_versions(path="app", versions=[1])
    body = raw("GET", "/v1/secret/data/app").json()
    assert body["data"]["metadata"]["destroyed"] is True
    assert body["data"]["metadata"]["deletion_time"] == ""
    with pytest.raises(exceptions.InvalidPath):
        client.secrets.kv.v2.read_secret_version(path="app", raise_on_deleted_version=False)


def test_write_returns_version_metadata(client: hvac.Client) -> None:
    """§2.2 a write returns the new version's metadata."""
    got = client.secrets.kv.v2.create_or_update_secret(path="app", secret={"k": "v"})
    assert set(got["data"]) == {"created_time", "custom_metadata", "deletion_time", "destroyed",
                                "version"}
    assert got["data"]["version"] == 1


def test_write_without_data_is_400(raw: Raw) -> None:
    """§2.2 a write with no data is 400 "no data provided"."""
    resp = raw("POST", "/v1/secret/data/app", json={"options": {}})
    assert (resp.status_code, resp.json()) == (400, {"errors": ["no data provided"]})


def test_cas_zero_on_existing_key_is_rejected(client: hvac.Client) -> None:
    """§2.2 cas=0 when the key exists: 400 "did not match the current version"."""
    client.secrets.kv.v2.create_or_update_secret(path="app", secret={"v": "1"})
    with pytest.raises(exceptions.InvalidRequest, match="did not match the current version"):
        client.secrets.kv.v2.create_or_update_secret(path="app", secret={"v": "2"}, cas=0)


def test_cas_matching_version_writes(client: hvac.Client) -> None:
    """§2.2 cas equal to the current version writes the next version."""
    client.secrets.kv.v2.create_or_update_secret(path="app", secret={"v": "1"}, cas=0)
    got = client.secrets.kv.v2.create_or_update_secret(path="app", secret={"v": "2"}, cas=1)
    assert got["data"]["version"] == 2


def test_cas_mismatch_is_rejected(client: hvac.Client) -> None:
    """§2.2 a stale cas is 400 InvalidRequest."""
    client.secrets.kv.v2.create_or_update_secret(path="app", secret={"v": "1"})
    client.secrets.kv.v2.create_or_update_secret(path="app", secret={"v": "2"})
    with pytest.raises(exceptions.InvalidRequest) as info:
        client.secrets.kv.v2.create_or_update_secret(path="app", secret={"v": "3"}, cas=1)
    assert info.value.errors == ["check-and-set parameter did not match the current version"]


def test_cas_required_without_cas_is_rejected(client: hvac.Client) -> None:
    """§2.2 cas_required on the key and no cas: "check-and-set parameter required"."""
    client.secrets.kv.v2.update_metadata(path="app", cas_required=True)
    with pytest.raises(exceptions.InvalidRequest) as info:
        client.secrets.kv.v2.create_or_update_secret(path="app", secret={"v": "1"})
    assert info.value.errors == ["check-and-set parameter required for this call"]


def test_cas_required_on_mount_config(client: hvac.Client) -> None:
    """§2.2/§2.6 cas_required in the mount config applies to every key."""
    client.secrets.kv.v2.configure(cas_required=True)
    with pytest.raises(exceptions.InvalidRequest, match="required for this call"):
        client.secrets.kv.v2.create_or_update_secret(path="any", secret={"v": "1"})


def test_unparseable_cas_is_rejected(raw: Raw) -> None:
    """§2.2 a cas that is not an integer: "error parsing check-and-set parameter"."""
    resp = raw("POST", "/v1/secret/data/app", json={"options": {"cas": "one"},
                                                     "data": {"v": "1"}})
    assert resp.json() == {"errors": ["error parsing check-and-set parameter"]}


def test_soft_deleted_versions_still_count_for_cas(client: hvac.Client) -> None:
    """§2.2 a soft-deleted latest version is still the current version for cas."""
    client.secrets.kv.v2.create_or_update_secret(path="app", secret={"v": "1"})
    client.secrets.kv.v2.delete_latest_version_of_secret(path="app")
    got = client.secrets.kv.v2.create_or_update_secret(path="app", secret={"v": "2"}, cas=1)
    assert got["data"]["version"] == 2


def test_max_versions_default_ten_trims_oldest(client: hvac.Client) -> None:
    """§2.2 max_versions defaults to 10: the 11th write purges version 1."""
    for i in range(11):
        client.secrets.kv.v2.create_or_update_secret(path="app", secret={"v": str(i)})
    with pytest.raises(exceptions.InvalidPath):
        client.secrets.kv.v2.read_secret_version(path="app", version=1,
                                                 raise_on_deleted_version=True)
    meta = client.secrets.kv.v2.read_secret_metadata(path="app")["data"]
    assert sorted(int(v) for v in meta["versions"]) == list(range(2, 12))
    assert meta["oldest_version"] == 2 and meta["current_version"] == 11


def test_metadata_read_shape(client: hvac.Client) -> None:
    """§2.3 metadata: string version keys, Go duration, current_version, custom_metadata."""
    client.secrets.kv.v2.create_or_update_secret(path="app", secret={"v": "1"})
    client.secrets.kv.v2.update_metadata(path="app", custom_metadata={"owner": "team"})
    meta = client.secrets.kv.v2.read_secret_metadata(path="app")["data"]
    assert meta["current_version"] == 1
    assert meta["delete_version_after"] == "0s"
    assert meta["custom_metadata"] == {"owner": "team"}
    assert meta["max_versions"] == 0 and meta["cas_required"] is False
    assert meta["versions"]["1"]["destroyed"] is False


def test_metadata_of_absent_path_is_404(client: hvac.Client) -> None:
    """§2.3 metadata of an absent path is 404 (InvalidPath)."""
    with pytest.raises(exceptions.InvalidPath):
        client.secrets.kv.v2.read_secret_metadata(path="absent")


def test_custom_metadata_shows_in_version_metadata(client: hvac.Client) -> None:
    """§2.1 a version read carries the key's custom_metadata."""
    client.secrets.kv.v2.create_or_update_secret(path="app", secret={"v": "1"})
    client.secrets.kv.v2.update_metadata(path="app", custom_metadata={"owner": "team"})
    got = client.secrets.kv.v2.read_secret_version(path="app", raise_on_deleted_version=True)
    assert got["data"]["metadata"]["custom_metadata"] == {"owner": "team"}


def test_metadata_delete_removes_all_versions(client: hvac.Client, raw: Raw) -> None:
    """§2.3 DELETE metadata removes every version (204), then reads are 404."""
    client.secrets.kv.v2.create_or_update_secret(path="app", secret={"v": "1"})
    assert raw("DELETE", "/v1/secret/metadata/app").status_code == 204
    with pytest.raises(exceptions.InvalidPath):
        client.secrets.kv.v2.read_secret_metadata(path="app")


def test_list_returns_keys_and_folders(client: hvac.Client) -> None:
    """§2.4 a listing has direct keys and folders ending in /, sorted."""
    for path in ("app/db", "app/api/key", "app/cache", "other"):
        client.secrets.kv.v2.create_or_update_secret(path=path, secret={"k": "v"})
    assert client.secrets.kv.v2.list_secrets(path="app")["data"]["keys"] == [
        "api/", "cache", "db"]
    assert client.secrets.kv.v2.list_secrets(path="")["data"]["keys"] == ["app/", "other"]


def test_empty_list_is_404_with_empty_errors(raw: Raw) -> None:
    """§2.4 an empty or absent listing is 404 {"errors":[]}."""
    resp = raw("LIST", "/v1/secret/metadata/nothing")
    assert (resp.status_code, resp.json()) == (404, {"errors": []})


def test_delete_latest_is_204_even_when_absent(raw: Raw) -> None:
    """§2.5 DELETE data/ is 204, also when the key does not exist."""
    assert raw("DELETE", "/v1/secret/data/absent").status_code == 204


def test_delete_and_undelete_versions(client: hvac.Client) -> None:
    """§2.5 delete/ soft-deletes versions and undelete/ restores them."""
    client.secrets.kv.v2.create_or_update_secret(path="app", secret={"v": "1"})
    client.secrets.kv.v2.delete_secret_versions(path="app", versions=[1])
    with pytest.raises(exceptions.InvalidPath):
        client.secrets.kv.v2.read_secret_version(path="app", raise_on_deleted_version=True)
    resp = client.secrets.kv.v2.undelete_secret_versions(path="app", versions=[1])
    assert resp.status_code == 204
    got = client.secrets.kv.v2.read_secret_version(path="app", raise_on_deleted_version=True)
    assert got["data"]["data"] == {"v": "1"}


def test_destroyed_version_cannot_be_undeleted(client: hvac.Client) -> None:
    """§2.5 destroy/ removes the data for good: undelete does not bring it back."""
    client.secrets.kv.v2.create_or_update_secret(path="app", secret={"v": "1"})
    client.secrets.kv.v2.destroy_secret_versions(path="app", versions=[1])
    client.secrets.kv.v2.undelete_secret_versions(path="app", versions=[1])
    with pytest.raises(exceptions.InvalidPath):
        client.secrets.kv.v2.read_secret_version(path="app", raise_on_deleted_version=False)


@pytest.mark.parametrize(("endpoint", "message"), [
    ("delete", "No version number provided"),
    ("undelete", "No version number provided"),
    ("destroy", "no version number provided"),
])
def test_version_endpoints_need_versions(raw: Raw, endpoint: str, message: str) -> None:
    """§2.5 delete/undelete/destroy without versions are 400 with Vault's exact casing."""
    resp = raw("POST", f"/v1/secret/{endpoint}/app", json={})
    assert (resp.status_code, resp.json()) == (400, {"errors": [message]})


def test_mount_config_read_and_write(client: hvac.Client) -> None:
    """§2.6 config: max_versions 0 until set; POST is 204; reads back the values."""
    got = client.secrets.kv.v2.read_configuration()["data"]
    assert got == {"cas_required": False, "delete_version_after": "0s", "max_versions": 0}
    assert client.secrets.kv.v2.configure(max_versions=3).status_code == 204
    assert client.secrets.kv.v2.read_configuration()["data"]["max_versions"] == 3


def test_non_data_path_is_404_with_warning(raw: Raw) -> None:
    """§2.1 GET /v1/secret/foo on a v2 mount is 404 with the "Invalid path" warning."""
    resp = raw("GET", "/v1/secret/foo")
    assert resp.status_code == 404
    body = json.loads(resp.text)
    assert "errors" not in body
    assert body["warnings"] == [
        "Invalid path for a versioned K/V secrets engine. See the API docs for the appropriate "
        "API endpoints to use. If using the Vault CLI, use 'vault kv get' for this operation."]


def test_root_of_data_is_404_with_warning(raw: Raw) -> None:
    """§2.1 a non-list operation on the bare data/ root is 404 with the root warning."""
    resp = raw("GET", "/v1/secret/data")
    assert resp.status_code == 404
    assert resp.json()["warnings"] == [
        "Non-listing operations on the root of a K/V v2 mount are not supported."]


@pytest.mark.filterwarnings("ignore:The raise_on_deleted_version:DeprecationWarning")
def test_patch_reads_then_writes_with_cas(client: hvac.Client) -> None:
    """§2.2 hvac patch() merges into the latest version (read + cas write)."""
    client.secrets.kv.v2.create_or_update_secret(path="app", secret={"a": "1", "b": "2"})
    client.secrets.kv.v2.patch(path="app", secret={"b": "3"})
    got = client.secrets.kv.v2.read_secret_version(path="app", raise_on_deleted_version=True)
    assert got["data"]["data"] == {"a": "1", "b": "3"}


def test_http_patch_needs_merge_patch_content_type(raw: Raw) -> None:
    """§2.2 PATCH with another Content-Type is 415."""
    raw("POST", "/v1/secret/data/app", json={"data": {"a": "1"}})
    resp = raw("PATCH", "/v1/secret/data/app", json={"data": {"a": "2"}})
    assert resp.status_code == 415
    ok = raw("PATCH", "/v1/secret/data/app", data=json.dumps({"data": {"b": "2"}}),
             headers={"Content-Type": "application/merge-patch+json"})
    assert ok.status_code == 200
    assert raw("GET", "/v1/secret/data/app").json()["data"]["data"] == {"a": "1", "b": "2"}
