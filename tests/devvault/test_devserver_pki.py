"""PKI (vault-http-api.md §5.4): real certificates signed by the mount's CA."""

from __future__ import annotations

import ipaddress
import re
import time
from collections.abc import Callable

import hvac
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hvac import exceptions

from devvault import DevVault

Raw = Callable[..., requests.Response]


def issue(client: hvac.Client, role: str = "dev", cn: str = "app.example.com",
          mount: str = "pki", **params: object) -> dict[str, object]:
    got = client.secrets.pki.generate_certificate(role, cn, extra_params=params,
                                                  mount_point=mount)
    return got  # type: ignore[no-any-return]


def test_issue_returns_reference_fields_and_no_lease(client: hvac.Client) -> None:
    """§5.4 issue: certificate, issuing_ca, ca_chain, private_key(_type), serial, expiration."""
    got = issue(client)
    data = got["data"]
    assert isinstance(data, dict)
    assert set(data) == {"certificate", "issuing_ca", "ca_chain", "private_key",
                         "private_key_type", "serial_number", "expiration"}
    assert (got["lease_id"], got["renewable"], got["lease_duration"]) == ("", False, 0)
    assert data["private_key_type"] == "ec"
    assert data["ca_chain"] == [data["issuing_ca"]]


def test_certificate_has_sans_and_is_signed_by_ca(client: hvac.Client) -> None:
    """§5.4 the certificate parses, carries CN, DNS and IP SANs, and the CA signed it."""
    data = issue(client, alt_names="www.example.com,api.example.com",
                 ip_sans="127.0.0.1")["data"]
    assert isinstance(data, dict)
    cert = x509.load_pem_x509_certificate(data["certificate"].encode())
    ca = x509.load_pem_x509_certificate(data["issuing_ca"].encode())
    cn = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value
    assert cn == "app.example.com"
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["app.example.com", "www.example.com",
                                                      "api.example.com"]
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    cert.verify_directly_issued_by(ca)
    key = serialization.load_pem_private_key(data["private_key"].encode(), password=None)
    assert key.public_key() == cert.public_key()


def test_serial_and_expiration_match_the_certificate(client: hvac.Client) -> None:
    """§5.4 serial_number is colon hex of the cert's serial; expiration is its notAfter."""
    data = issue(client, ttl="2h")["data"]
    assert isinstance(data, dict)
    cert = x509.load_pem_x509_certificate(data["certificate"].encode())
    assert int(data["serial_number"].replace(":", ""), 16) == cert.serial_number
    assert data["expiration"] == int(cert.not_valid_after_utc.timestamp())
    assert abs(data["expiration"] - (time.time() + 7200)) < 10


def test_ttl_is_capped_by_role_max_ttl(client: hvac.Client) -> None:
    """§5.4 a ttl above the role's max_ttl is capped (with a warning)."""
    got = issue(client, ttl="8760h")
    data = got["data"]
    assert isinstance(data, dict)
    assert abs(data["expiration"] - (time.time() + 720 * 3600)) < 10
    assert got["warnings"]


def test_name_not_allowed_by_role_is_400(client: hvac.Client) -> None:
    """§5.4 a common name outside allowed_domains: 400 "… not allowed by this role"."""
    client.secrets.pki.create_or_update_role("web", extra_params={
        "allowed_domains": ["example.com"], "allow_subdomains": True, "key_type": "ec"})
    issue(client, role="web", cn="a.example.com")
    with pytest.raises(exceptions.InvalidRequest) as info:
        issue(client, role="web", cn="evil.org")
    assert info.value.errors == ["common name evil.org not allowed by this role"]


def test_alt_name_not_allowed_by_role_is_400(client: hvac.Client) -> None:
    """§5.4 an alt name outside allowed_domains is refused too."""
    client.secrets.pki.create_or_update_role("web", extra_params={
        "allowed_domains": "example.com", "allow_bare_domains": True, "key_type": "ec"})
    with pytest.raises(exceptions.InvalidRequest, match="subject alternate name"):
        issue(client, role="web", cn="example.com", alt_names="x.org")


def test_unknown_role_is_400(client: hvac.Client) -> None:
    """§5.4 issue against an unknown role: 400 "unknown role: x"."""
    with pytest.raises(exceptions.InvalidRequest, match="unknown role: nope"):
        issue(client, role="nope")


def test_ca_pem_is_raw_pem(raw: Raw, client: hvac.Client) -> None:
    """§5.4 GET pki/ca/pem returns the CA as raw PEM (unauthenticated)."""
    resp = raw("GET", "/v1/pki/ca/pem", token="")
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == "application/pem-certificate-chain"
    assert resp.text == issue(client)["data"]["issuing_ca"]  # type: ignore[index]


def test_new_mount_generate_root_and_issue_rsa(client: hvac.Client) -> None:
    """§5.4 enable pki, generate an internal root, add a role (default rsa keys), issue."""
    client.sys.enable_secrets_engine("pki", path="pki2")
    root = client.secrets.pki.generate_root("internal", "Test Root", mount_point="pki2")
    assert "private_key" not in root["data"]
    ca = x509.load_pem_x509_certificate(root["data"]["certificate"].encode())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    client.secrets.pki.create_or_update_role("any", extra_params={"allow_any_name": True},
                                             mount_point="pki2")
    data = issue(client, role="any", cn="svc.internal", mount="pki2", ttl="1h")["data"]
    assert isinstance(data, dict)
    assert data["private_key_type"] == "rsa"
    cert = x509.load_pem_x509_certificate(data["certificate"].encode())
    assert isinstance(cert.public_key(), rsa.RSAPublicKey)
    cert.verify_directly_issued_by(ca)


def test_leaf_past_ca_expiry_is_400(client: hvac.Client) -> None:
    """§5.4 a leaf that would outlive its CA is refused (leaf_not_after_behavior "err")."""
    client.sys.enable_secrets_engine("pki", path="short")
    client.secrets.pki.generate_root("internal", "Short Root", mount_point="short",
                                     extra_params={"ttl": "2h"})
    client.secrets.pki.create_or_update_role("any", extra_params={"allow_any_name": True,
                                                                  "key_type": "ec"},
                                             mount_point="short")
    with pytest.raises(exceptions.InvalidRequest, match="beyond the expiration of the CA"):
        issue(client, role="any", mount="short", ttl="3h")


def test_issue_without_ca_is_400(client: hvac.Client) -> None:
    """§5.4 a mount with no root cannot issue."""
    client.sys.enable_secrets_engine("pki", path="empty")
    client.secrets.pki.create_or_update_role("any", extra_params={"allow_any_name": True},
                                             mount_point="empty")
    with pytest.raises(exceptions.InvalidRequest, match="no default issuer"):
        issue(client, role="any", mount="empty")


def test_certificate_times_follow_server_clock(vault: DevVault, client: hvac.Client) -> None:
    """§5.4 notBefore/notAfter use the server clock (advance_clock moves them)."""
    vault.advance_clock(3600)
    data = issue(client, ttl="1h")["data"]
    assert isinstance(data, dict)
    assert abs(data["expiration"] - (time.time() + 7200)) < 10


def test_dev_role_issues_ec_keys(client: hvac.Client) -> None:
    """Dev default: role dev issues P-256 keys for any name."""
    data = issue(client, cn="anything.local")["data"]
    assert isinstance(data, dict)
    key = serialization.load_pem_private_key(data["private_key"].encode(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"


def test_generate_lease_role_issues_under_a_lease(vault: DevVault,
                                                  client: hvac.Client) -> None:
    """generate_lease: lease_id pki/issue/ROLE/ID, renewable false, lease_duration = TTL."""
    client.secrets.pki.create_or_update_role("leased", extra_params={
        "allow_any_name": True, "generate_lease": True, "ttl": "2h"})
    assert client.secrets.pki.read_role("leased")["data"]["generate_lease"] is True
    got = issue(client, role="leased")
    assert got["lease_id"].startswith("pki/issue/leased/")
    assert (got["renewable"], got["lease_duration"]) == (False, 7200)
    assert client.sys.read_lease(got["lease_id"])["data"]["renewable"] is False
    client.sys.revoke_lease(got["lease_id"])
    assert vault.lease_state(got["lease_id"]) == "revoked"


# --- revoke: as Vault's pathRevokeWrite / revokeCert answer ------------------------------------


def revoke(client: hvac.Client, mount: str = "pki", **data: object) -> dict[str, object]:
    return client.write_data(f"{mount}/revoke", data=data)  # type: ignore[no-any-return]


def revoked_serials(client: hvac.Client, mount: str = "pki") -> list[str]:
    got = client.list(f"{mount}/certs/revoked")  # hvac answers None to a 404 (no revoked certificate)
    return got["data"]["keys"] if got else []  # type: ignore[no-any-return]


def test_revoke_by_serial_answers_the_time_and_lists_it(vault: DevVault, client: hvac.Client) -> None:
    """revoke {serial_number}: revocation_time (unix), its RFC 3339 text, state revoked; listed."""
    assert revoked_serials(client) == []
    serial = issue(client)["data"]["serial_number"]  # type: ignore[index]
    got = revoke(client, serial_number=serial)
    data = got["data"]
    assert isinstance(data, dict)
    assert set(data) == {"revocation_time", "revocation_time_rfc3339", "state"}
    assert data["state"] == "revoked"
    assert abs(data["revocation_time"] - time.time()) < 5
    assert data["revocation_time_rfc3339"].endswith("Z")
    assert revoked_serials(client) == [serial]


def test_revoking_again_answers_the_first_time(vault: DevVault, client: hvac.Client) -> None:
    """A certificate already revoked: the same answer, the first revocation time (no error)."""
    serial = issue(client)["data"]["serial_number"]  # type: ignore[index]
    first = revoke(client, serial_number=serial)["data"]
    vault.advance_clock(60)
    assert revoke(client, serial_number=serial.upper().replace(":", "-"))["data"] == first  # type: ignore[attr-defined]


def test_revoke_refusals(client: hvac.Client) -> None:
    """Unknown serial, neither or both fields, the issuer's own certificate: 400 with Vault's words."""
    data = issue(client)["data"]
    assert isinstance(data, dict)
    with pytest.raises(exceptions.InvalidRequest, match=re.escape("certificate with serial 01:02 not found.")):
        revoke(client, serial_number="01:02")
    neither = "The serial number or certificate to revoke must be provided."
    with pytest.raises(exceptions.InvalidRequest, match=re.escape(neither)):
        revoke(client)
    with pytest.raises(exceptions.InvalidRequest, match="Must provide either the certificate or the serial"):
        revoke(client, serial_number=data["serial_number"], certificate=data["certificate"])
    root = x509.load_pem_x509_certificate(data["issuing_ca"].encode())
    root_serial = ":".join(f"{b:02x}" for b in root.serial_number.to_bytes(20, "big").lstrip(b"\0"))
    with pytest.raises(exceptions.InvalidRequest, match=r"adding issuer \(id: .+\) to its own CRL is not allowed"):
        revoke(client, serial_number=root_serial)


def test_revoke_by_certificate(client: hvac.Client) -> None:
    """revoke {certificate}: one this mount issued (even with no_store), not one of another CA."""
    client.secrets.pki.create_or_update_role("nostore", extra_params={"allow_any_name": True, "no_store": True})
    data = issue(client, role="nostore")["data"]
    assert isinstance(data, dict)
    with pytest.raises(exceptions.InvalidRequest, match="not found"):
        revoke(client, serial_number=data["serial_number"])
    assert revoke(client, certificate=data["certificate"])["data"]["state"] == "revoked"  # type: ignore[index]
    assert data["serial_number"] in revoked_serials(client)
    client.sys.enable_secrets_engine("pki", path="other")
    client.write_data("other/root/generate/internal", data={"common_name": "other CA", "ttl": "48h"})
    client.secrets.pki.create_or_update_role(
        "any", extra_params={"allow_any_name": True, "ttl": "1h"}, mount_point="other"
    )
    foreign = issue(client, role="any", mount="other")["data"]
    with pytest.raises(exceptions.InvalidRequest, match="unable to verify signature on presented cert"):
        revoke(client, certificate=foreign["certificate"])  # type: ignore[index]


def test_an_expired_certificate_is_not_revoked(vault: DevVault, client: hvac.Client) -> None:
    """Past its notAfter: 200, no data, a warning that it is refused from the CRL."""
    serial = issue(client, ttl="1h")["data"]["serial_number"]  # type: ignore[index]
    vault.advance_clock(3600)
    got = revoke(client, serial_number=serial)
    assert got["data"] is None
    assert got["warnings"] == [f"certificate with serial {serial} already expired; refusing to add to CRL"]
    assert revoked_serials(client) == []
