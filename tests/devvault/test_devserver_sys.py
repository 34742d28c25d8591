"""sys/health, seal, unseal and init (vault-http-api.md §1.7, §1.3, §1.4)."""

from __future__ import annotations

from collections.abc import Callable

import hvac
import pytest
import requests
from hvac import exceptions

from devvault import DevVault

Raw = Callable[..., requests.Response]


def test_health_get_active_is_200_with_body(raw: Raw) -> None:
    """§1.7 GET sys/health on an active node: 200 and the CE body, no token needed."""
    resp = raw("GET", "/v1/sys/health", token="")
    assert resp.status_code == 200
    body = resp.json()
    assert body["initialized"] is True and body["sealed"] is False and body["standby"] is False
    assert {"cluster_id", "cluster_name", "version", "server_time_utc"} <= set(body)
    assert list(body) == sorted(body)


def test_health_head_has_no_body(raw: Raw) -> None:
    """§1.7 HEAD sys/health: status only, no body."""
    resp = raw("HEAD", "/v1/sys/health", token="")
    assert (resp.status_code, resp.content) == (200, b"")


def test_hvac_health_head_returns_response(client: hvac.Client) -> None:
    """§1.7 hvac read_health_status(method="HEAD") returns a Response, never raises."""
    resp = client.sys.read_health_status(method="HEAD")
    assert resp.status_code == 200


def test_health_sealed_is_503_with_body(vault: DevVault, raw: Raw) -> None:
    """§1.7 sealed: GET is 503 with the body (sealed true, no cluster name)."""
    vault.seal()
    resp = raw("GET", "/v1/sys/health", token="")
    assert resp.status_code == 503
    assert resp.json()["sealed"] is True
    assert "cluster_name" not in resp.json()


def test_health_code_overrides(vault: DevVault, raw: Raw) -> None:
    """§1.7 activecode and sealedcode override the status."""
    assert raw("GET", "/v1/sys/health", params={"activecode": 299}).status_code == 299
    vault.seal()
    assert raw("GET", "/v1/sys/health", params={"sealedcode": 200}).status_code == 200


def test_health_bad_code_is_400(raw: Raw) -> None:
    """§1.7 a non-integer code parameter is 400."""
    assert raw("GET", "/v1/sys/health", params={"activecode": "x"}).status_code == 400


def test_sealed_server_answers_503_vault_is_sealed(vault: DevVault, client: hvac.Client,
                                                   raw: Raw) -> None:
    """§1.4 sealed: every other path is 503 {"errors":["Vault is sealed"]} (hvac VaultDown)."""
    vault.seal()
    with pytest.raises(exceptions.VaultDown):
        client.secrets.kv.v2.read_secret_version(path="app", raise_on_deleted_version=True)
    resp = raw("GET", "/v1/auth/token/lookup-self")
    assert (resp.status_code, resp.json()) == (503, {"errors": ["Vault is sealed"]})


def test_seal_status_works_while_sealed(vault: DevVault, client: hvac.Client) -> None:
    """§8 sys/seal-status answers while sealed (hvac is_sealed)."""
    vault.seal()
    assert client.sys.is_sealed() is True
    vault.unseal()
    assert client.sys.is_sealed() is False


def test_seal_and_unseal_over_the_api(client: hvac.Client) -> None:
    """sys/seal (root) seals; sys/unseal with any key unseals and returns the seal status."""
    assert client.sys.seal().status_code == 204
    assert client.sys.is_sealed()
    status = client.sys.submit_unseal_key(key="any-key")
    assert status["sealed"] is False and status["type"] == "shamir"
    client.secrets.kv.v2.create_or_update_secret(path="app", secret={"k": "v"})


def test_unseal_without_key_is_400(raw: Raw) -> None:
    """sys/unseal without a key or reset is 400."""
    assert raw("PUT", "/v1/sys/unseal", json={}).status_code == 400


def test_is_initialized(client: hvac.Client, raw: Raw) -> None:
    """§8 sys/init GET says initialized (hvac is_initialized)."""
    assert client.sys.is_initialized() is True
    assert raw("PUT", "/v1/sys/init", json={}).status_code == 400
