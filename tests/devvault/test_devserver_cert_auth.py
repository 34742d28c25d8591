"""TLS certificate auth (``cert``): CA roles, and login by the client certificate on the TLS
connection (the listener asks for an optional client certificate)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import hvac
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from devvault.certs import CA, issue, make_ca, new_key, private_pem
from hvac import exceptions

from devvault import DevVault


@dataclass
class ClientCert:
    cert: str
    key: str


@pytest.fixture
def tls_vault() -> Iterator[DevVault]:
    with DevVault(tls=True).start() as server:
        yield server


@pytest.fixture
def server_ca(tls_vault: DevVault, tmp_path: Path) -> str:
    """A file holding the CA of the server's TLS certificate (for verify=)."""
    assert tls_vault.ca_pem is not None
    path = tmp_path / "server-ca.pem"
    path.write_text(tls_vault.ca_pem)
    return str(path)


@pytest.fixture
def admin(tls_vault: DevVault, server_ca: str) -> Iterator[hvac.Client]:
    c = hvac.Client(url=tls_vault.address, token=tls_vault.root_token, verify=server_ca)
    c.sys.enable_auth_method("cert")
    yield c
    c.adapter.close()


def client_ca(name: str = "client CA") -> CA:
    return make_ca(name, now=time.time(), ttl=86400)


def client_cert(ca: CA, tmp_path: Path, cn: str = "app.example.com",
                ttl: int = 3600) -> ClientCert:
    key = new_key("ec")
    cert = issue(ca, common_name=cn, dns_names=[cn], ip_sans=[], now=time.time(), ttl=ttl,
                 key=key, server=False)
    cert_file, key_file = tmp_path / f"{cn}-{ca.cert.serial_number}.crt", tmp_path / f"{cn}.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_text(private_pem(key))
    return ClientCert(str(cert_file), str(key_file))


def login(vault: DevVault, server_ca: str, cert: ClientCert, name: str = "") -> dict[str, object]:
    c = hvac.Client(url=vault.address, verify=server_ca)
    try:
        got: dict[str, object] = c.auth.cert.login(name=name, cert_pem=cert.cert,
                                                   key_pem=cert.key)
        return got
    finally:
        c.adapter.close()


def test_login_with_a_certificate_of_the_role_ca(tls_vault: DevVault, server_ca: str,
                                                 admin: hvac.Client, tmp_path: Path) -> None:
    """login: the role's token_policies, metadata cert_name/common_name, path auth/cert/login."""
    ca = client_ca()
    admin.auth.cert.create_ca_certificate_role("web", certificate=ca.pem,
                                               token_policies=["web"], token_ttl="1h")
    got = login(tls_vault, server_ca, client_cert(ca, tmp_path))
    auth = got["auth"]
    assert isinstance(auth, dict)
    assert auth["policies"] == ["default", "web"] and auth["lease_duration"] == 3600
    assert auth["metadata"]["cert_name"] == "web"
    assert auth["metadata"]["common_name"] == "app.example.com"
    data = admin.auth.token.lookup(auth["client_token"])["data"]
    assert data["path"] == "auth/cert/login" and data["display_name"] == "cert-web"


def test_named_role_must_match(tls_vault: DevVault, server_ca: str, admin: hvac.Client,
                               tmp_path: Path) -> None:
    """login with name= tries only that role: another role's CA is 400."""
    ca_a, ca_b = client_ca("A"), client_ca("B")
    admin.auth.cert.create_ca_certificate_role("a", certificate=ca_a.pem)
    admin.auth.cert.create_ca_certificate_role("b", certificate=ca_b.pem)
    cert = client_cert(ca_a, tmp_path)
    assert login(tls_vault, server_ca, cert, name="a")["auth"]["metadata"]["cert_name"] == "a"
    with pytest.raises(exceptions.InvalidRequest,
                       match="invalid certificate or no client certificate supplied"):
        login(tls_vault, server_ca, cert, name="b")


def test_certificate_of_a_removed_role_is_400(tls_vault: DevVault, server_ca: str,
                                              admin: hvac.Client, tmp_path: Path) -> None:
    """A CA whose role was deleted no longer logs in (the listener may still accept it)."""
    ca = client_ca()
    admin.auth.cert.create_ca_certificate_role("web", certificate=ca.pem)
    admin.auth.cert.delete_certificate_role("web")
    with pytest.raises(exceptions.InvalidRequest, match="invalid certificate"):
        login(tls_vault, server_ca, client_cert(ca, tmp_path))


def test_allowed_common_names(tls_vault: DevVault, server_ca: str, admin: hvac.Client,
                              tmp_path: Path) -> None:
    """allowed_common_names globs: a certificate with another CN is 400."""
    ca = client_ca()
    admin.auth.cert.create_ca_certificate_role("web", certificate=ca.pem,
                                               allowed_common_names=["*.internal"])
    with pytest.raises(exceptions.InvalidRequest):
        login(tls_vault, server_ca, client_cert(ca, tmp_path, cn="app.example.com"))
    got = login(tls_vault, server_ca, client_cert(ca, tmp_path, cn="svc.internal"))
    assert got["auth"]["metadata"]["common_name"] == "svc.internal"


def test_expired_on_the_server_clock_is_400(tls_vault: DevVault, server_ca: str,
                                            admin: hvac.Client, tmp_path: Path) -> None:
    """A certificate past its notAfter on the server clock is refused."""
    ca = client_ca()
    admin.auth.cert.create_ca_certificate_role("web", certificate=ca.pem)
    cert = client_cert(ca, tmp_path, ttl=600)
    tls_vault.advance_clock(700)
    with pytest.raises(exceptions.InvalidRequest, match="invalid certificate"):
        login(tls_vault, server_ca, cert)


def test_no_client_certificate_is_400(tls_vault: DevVault, server_ca: str,
                                      admin: hvac.Client) -> None:
    """login over TLS without a client certificate: 400 "client certificate must be supplied"."""
    admin.auth.cert.create_ca_certificate_role("web", certificate=client_ca().pem)
    resp = requests.post(tls_vault.address + "/v1/auth/cert/login", json={},
                         verify=server_ca, timeout=5)
    assert resp.status_code == 400
    assert resp.json() == {"errors": ["client certificate must be supplied"]}


def test_plain_http_is_400(vault: DevVault, client: hvac.Client) -> None:
    """login over plain HTTP: 400 "tls connection required"."""
    client.sys.enable_auth_method("cert")
    resp = requests.post(vault.address + "/v1/auth/cert/login", json={}, timeout=5)
    assert resp.status_code == 400 and resp.json() == {"errors": ["tls connection required"]}


def test_raw_login_with_requests(tls_vault: DevVault, server_ca: str, admin: hvac.Client,
                                 tmp_path: Path) -> None:
    """A raw HTTPS login with requests' cert=: 200, data null, an auth block."""
    ca = client_ca()
    admin.auth.cert.create_ca_certificate_role("web", certificate=ca.pem)
    cert = client_cert(ca, tmp_path)
    resp = requests.post(tls_vault.address + "/v1/auth/cert/login", json={"name": "web"},
                         verify=server_ca, cert=(cert.cert, cert.key), timeout=5)
    assert resp.status_code == 200
    body = resp.json()
    assert body["data"] is None and body["auth"]["client_token"].startswith("hvs.")


def test_role_read_and_list(admin: hvac.Client) -> None:
    """certs/{name} reads back the PEM and token fields; LIST certs lists names."""
    ca = client_ca()
    admin.auth.cert.create_ca_certificate_role("web", certificate=ca.pem,
                                               token_policies=["web"], display_name="w")
    data = admin.auth.cert.read_ca_certificate_role("web")["data"]
    assert data["certificate"] == ca.pem and data["token_policies"] == ["web"]
    assert data["display_name"] == "w"
    assert admin.auth.cert.list_certificate_roles()["data"]["keys"] == ["web"]


def test_bad_certificate_pem_is_400(admin: hvac.Client) -> None:
    """A role whose certificate is not PEM: 400."""
    with pytest.raises(exceptions.InvalidRequest, match="failed to parse certificate"):
        admin.write_data("auth/cert/certs/web", data={"certificate": "not a pem"})


def test_trust_client_ca_knob(tls_vault: DevVault, server_ca: str, tmp_path: Path) -> None:
    """DevVault.trust_client_ca lets the listener accept that CA's client certificates."""
    ca = client_ca()
    cert = client_cert(ca, tmp_path)
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(tls_vault.address + "/v1/sys/health", verify=server_ca,
                     cert=(cert.cert, cert.key), timeout=5)
    tls_vault.trust_client_ca(ca.pem)
    resp = requests.get(tls_vault.address + "/v1/sys/health", verify=server_ca,
                        cert=(cert.cert, cert.key), timeout=5)
    assert resp.status_code == 200
