"""Fixtures for the dev server's conformance tests: a fresh server per test, hvac and raw clients,
and a tiny JWS encoder (RS256/ES256) so auth tests can sign their own service-account tokens."""

from __future__ import annotations

import base64
import datetime
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import hvac
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from devvault import DevVault


@pytest.fixture
def vault() -> Iterator[DevVault]:
    with DevVault().start() as server:
        yield server


@pytest.fixture
def client(vault: DevVault) -> Iterator[hvac.Client]:
    c = hvac.Client(url=vault.address, token=vault.root_token)
    yield c
    c.adapter.close()


@dataclass
class Raw:
    """requests against the server, for what hvac hides (headers, exact bodies, verbs)."""

    address: str
    token: str
    session: requests.Session

    def __call__(self, method: str, path: str, *, token: str | None = None,
                 **kwargs: Any) -> requests.Response:
        headers = kwargs.pop("headers", {})
        if token is None:
            token = self.token
        if token:
            headers.setdefault("X-Vault-Token", token)
        return self.session.request(method, self.address + path, headers=headers, **kwargs)


@pytest.fixture
def raw(vault: DevVault) -> Iterator[Raw]:
    with requests.Session() as session:
        yield Raw(vault.address, vault.root_token, session)


@pytest.fixture
def token_client(vault: DevVault) -> Iterator[Callable[[str], hvac.Client]]:
    """Makes hvac clients that use another token."""
    made: list[hvac.Client] = []

    def make(token: str) -> hvac.Client:
        made.append(hvac.Client(url=vault.address, token=token))
        return made[-1]

    yield make
    for c in made:
        c.adapter.close()


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class Signer:
    """A private key that signs JWTs; ``pem`` is the public key to configure on the server."""

    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    alg: str

    @property
    def pem(self) -> str:
        return self.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()

    @property
    def cert_pem(self) -> str:
        """A self-signed certificate for the key (hvac's kubernetes.configure wants certs)."""
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sa-signer")])
        now = datetime.datetime.now(datetime.UTC)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
                .sign(self.key, hashes.SHA256()))
        return cert.public_bytes(serialization.Encoding.PEM).decode()

    def sign(self, claims: dict[str, Any], *, alg: str | None = None) -> str:
        header = {"alg": alg or self.alg, "typ": "JWT", "kid": "test"}
        signing_input = (b64url(json.dumps(header).encode()) + "." +
                         b64url(json.dumps(claims).encode())).encode()
        if isinstance(self.key, rsa.RSAPrivateKey):
            signature = self.key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
        else:
            r, s = decode_dss_signature(self.key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
            signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        return signing_input.decode() + "." + b64url(signature)


@pytest.fixture(scope="session")
def rsa_signer() -> Signer:
    return Signer(rsa.generate_private_key(public_exponent=65537, key_size=2048), "RS256")


@pytest.fixture(scope="session")
def ec_signer() -> Signer:
    return Signer(ec.generate_private_key(ec.SECP256R1()), "ES256")


@pytest.fixture
def stranger() -> Signer:
    """A signer whose key the server was never told about."""
    return Signer(ec.generate_private_key(ec.SECP256R1()), "ES256")


def _sa_claims(name: str = "app", namespace: str = "default", *, exp_in: float = 3600,
              now: float | None = None, **extra: Any) -> dict[str, Any]:
    """Claims of a legacy (secret-based) Kubernetes service-account token."""
    now = time.time() if now is None else now
    claims: dict[str, Any] = {
        "iss": "kubernetes/serviceaccount",
        "kubernetes.io/serviceaccount/namespace": namespace,
        "kubernetes.io/serviceaccount/secret.name": f"{name}-token-abcde",
        "kubernetes.io/serviceaccount/service-account.name": name,
        "kubernetes.io/serviceaccount/service-account.uid": "7f6f2a7c-0000-4000-8000-000000000001",
        "sub": f"system:serviceaccount:{namespace}:{name}",
        "iat": int(now),
        "exp": int(now + exp_in),
    }
    claims.update(extra)
    return claims


def _projected_claims(name: str = "app", namespace: str = "default", *, audience: str = "vault",
                     exp_in: float = 3600) -> dict[str, Any]:
    """Claims of a projected (bound) service-account token."""
    now = time.time()
    return {
        "aud": [audience],
        "iss": "https://kubernetes.default.svc.cluster.local",
        "kubernetes.io": {
            "namespace": namespace,
            "pod": {"name": f"{name}-7d9f", "uid": "0b8c0000-0000-4000-8000-000000000002"},
            "serviceaccount": {"name": name, "uid": "0b8c0000-0000-4000-8000-000000000003"},
        },
        "sub": f"system:serviceaccount:{namespace}:{name}",
        "iat": int(now),
        "nbf": int(now),
        "exp": int(now + exp_in),
    }


@pytest.fixture
def sa_claims() -> Callable[..., dict[str, Any]]:
    return _sa_claims


@pytest.fixture
def projected_claims() -> Callable[..., dict[str, Any]]:
    return _projected_claims
