"""X.509 helpers on ``cryptography``: keys, a self-signed CA, leaf certificates, PEM text.

Used by the PKI engine and by the TLS listener (``DevVault(tls=True)``), which gets its own CA.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["CA", "PrivateKey", "issue", "make_ca", "new_key", "private_pem", "serial_text"]

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey

#: Vault back-dates ``notBefore`` by 30 s (the PKI role's ``not_before_duration``).
NOT_BEFORE = 30


@dataclass(frozen=True, slots=True)
class CA:
    key: PrivateKey
    cert: x509.Certificate

    @property
    def pem(self) -> str:
        return self.cert.public_bytes(serialization.Encoding.PEM).decode()

    @property
    def not_after(self) -> float:
        return self.cert.not_valid_after_utc.timestamp()


def new_key(key_type: str = "ec", bits: int = 0) -> PrivateKey:
    """Returns a new ``rsa`` (2048 by default), ``ec`` (P-256) or ``ed25519`` private key."""
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=bits or 2048)
    if key_type == "ec":
        curve: ec.EllipticCurve = {0: ec.SECP256R1(), 256: ec.SECP256R1(), 224: ec.SECP224R1(),
                                   384: ec.SECP384R1(), 521: ec.SECP521R1()}[bits]
        return ec.generate_private_key(curve)
    if key_type == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(f"unknown key type {key_type!r}")


def private_pem(key: PrivateKey) -> str:
    """PEM of a private key as Vault returns it: PKCS#1/SEC1 for RSA/EC, PKCS#8 for ed25519."""
    fmt = (serialization.PrivateFormat.PKCS8 if isinstance(key, ed25519.Ed25519PrivateKey)
           else serialization.PrivateFormat.TraditionalOpenSSL)
    return key.private_bytes(serialization.Encoding.PEM, fmt,
                             serialization.NoEncryption()).decode()


def serial_text(serial: int) -> str:
    """Vault's colon-separated lower-case hex form of a serial number (``39:dd:2e:…``)."""
    raw = serial.to_bytes((serial.bit_length() + 7) // 8 or 1, "big")
    return ":".join(f"{byte:02x}" for byte in raw)


def _algorithm(key: PrivateKey) -> hashes.SHA256 | None:
    return None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()


def _utc(timestamp: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC)


def make_ca(common_name: str, *, now: float, ttl: int, key_type: str = "ec",
            bits: int = 0) -> CA:
    """Returns a self-signed CA valid from ``now - 30s`` for ``ttl`` seconds."""
    key = new_key(key_type, bits)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_utc(now - NOT_BEFORE))
        .not_valid_after(_utc(now + ttl))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, key_cert_sign=True, crl_sign=True,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                       critical=False)
        .sign(key, _algorithm(key))
    )
    return CA(key=key, cert=cert)


def issue(ca: CA, *, common_name: str, dns_names: list[str], ip_sans: list[str], now: float,
          ttl: int, key: PrivateKey, server: bool = True, client: bool = True) -> x509.Certificate:
    """Returns a leaf certificate for ``key`` signed by ``ca``."""
    sans: list[x509.GeneralName] = [x509.DNSName(name) for name in dns_names]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_sans]
    usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if server else []) + (
        [ExtendedKeyUsageOID.CLIENT_AUTH] if client else [])
    is_rsa = isinstance(key, rsa.RSAPrivateKey)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
                      if common_name else x509.Name([]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_utc(now - NOT_BEFORE))
        .not_valid_after(_utc(now + ttl))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                     key_encipherment=is_rsa, data_encipherment=False,
                                     key_agreement=isinstance(key, ec.EllipticCurvePrivateKey),
                                     key_cert_sign=False, crl_sign=False, encipher_only=False,
                                     decipher_only=False),
                       critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
            ca.key.public_key()), critical=False)
    )
    if usages:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(ca.key, _algorithm(ca.key))
