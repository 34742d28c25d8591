"""JWS compact tokens: parse, verify the signature against PEM public keys, validate claims.

Mirrors ``hashicorp/cap/jwt`` ``Validator.validateAll``, whose error texts both the kubernetes and
jwt auth methods pass on: the signature first (``error verifying token signature: …``), then the
``alg`` header, ``iss``, ``sub``, ``aud``, and the time claims with leeway.
Supported algorithms: RS256/384/512, PS256/384/512, ES256/384/512.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

__all__ = ["JWTError", "PublicKey", "Token", "load_public_keys", "parse", "validate"]

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey

_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "256": hashes.SHA256, "384": hashes.SHA384, "512": hashes.SHA512,
}
_CURVES = {"ES256": "secp256r1", "ES384": "secp384r1", "ES512": "secp521r1"}
ALL_ALGS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512")


class JWTError(Exception):
    """The token is malformed, badly signed or its claims do not validate (cap's message)."""


@dataclass(frozen=True, slots=True)
class Token:
    header: dict[str, Any]
    claims: dict[str, Any]
    signing_input: bytes
    signature: bytes

    @property
    def alg(self) -> str:
        return str(self.header.get("alg", ""))


def _b64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def parse(text: str) -> Token:
    """Splits and decodes a compact JWS; raises JWTError in go-jose's words."""
    parts = text.strip().split(".")
    if len(parts) != 3:
        raise JWTError("go-jose/go-jose: compact JWS format must have three parts")
    try:
        header = json.loads(_b64(parts[0]))
        claims = json.loads(_b64(parts[1]))
        signature = _b64(parts[2])
    except (ValueError, binascii.Error) as exc:
        raise JWTError(f"go-jose/go-jose: {exc}") from exc
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise JWTError("go-jose/go-jose: invalid JWS header or payload")
    return Token(header=header, claims=claims, signing_input=f"{parts[0]}.{parts[1]}".encode(),
                 signature=signature)


def load_public_keys(pems: list[str]) -> list[PublicKey]:
    """Parses PEM public keys or certificates (RSA or ECDSA); raises ValueError otherwise."""
    keys: list[PublicKey] = []
    for text in pems:
        data = text.encode()
        try:
            key: object = serialization.load_pem_public_key(data)
        except ValueError:
            try:
                key = x509.load_pem_x509_certificate(data).public_key()
            except ValueError:
                key = None
        if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
            raise ValueError("data does not contain any valid RSA or ECDSA public keys")
        keys.append(key)
    return keys


def _verifies(token: Token, key: PublicKey) -> bool:
    alg = token.alg
    if alg not in ALL_ALGS:
        return False
    digest = _HASHES[alg[2:]]()
    try:
        if alg.startswith(("RS", "PS")) and isinstance(key, rsa.RSAPublicKey):
            pad: padding.AsymmetricPadding = padding.PKCS1v15() if alg.startswith("RS") else (
                padding.PSS(mgf=padding.MGF1(_HASHES[alg[2:]]()),
                            salt_length=digest.digest_size))
            key.verify(token.signature, token.signing_input, pad, digest)
            return True
        if alg.startswith("ES") and isinstance(key, ec.EllipticCurvePublicKey):
            if key.curve.name != _CURVES[alg]:
                return False
            half = len(token.signature) // 2
            der = encode_dss_signature(int.from_bytes(token.signature[:half], "big"),
                                       int.from_bytes(token.signature[half:], "big"))
            key.verify(der, token.signing_input, ec.ECDSA(digest))
            return True
    except InvalidSignature:
        return False
    return False


def _audiences(claims: dict[str, Any]) -> list[str]:
    aud = claims.get("aud")
    if aud is None:
        return []
    return [str(aud)] if isinstance(aud, str) else [str(item) for item in aud]


def _number(claims: dict[str, Any], name: str) -> float:
    value = claims.get(name)
    if value is None:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise JWTError(f"go-jose/go-jose/jwt: expected number for {name}")
    return float(value)


def validate(text: str, keys: list[PublicKey] | None, *, now: float, issuer: str = "",
             subject: str = "", audiences: list[str] | None = None,
             algorithms: tuple[str, ...] | list[str] = ALL_ALGS, skew: float = 60,
             exp_leeway: float = 150, nbf_leeway: float = 150,
             allow_missing_times: bool = False) -> dict[str, Any]:
    """Returns the claims of a valid token; raises JWTError with cap's message otherwise.

    ``keys`` None skips the signature check (the kubernetes method without ``pem_keys``).
    """
    try:
        token = parse(text)
    except JWTError as exc:
        raise JWTError(f"error verifying token signature: {exc}") from exc
    if keys is not None and not any(_verifies(token, key) for key in keys):
        raise JWTError("error verifying token signature: no known key successfully validated "
                       "the token signature")
    if token.alg not in algorithms:
        raise JWTError("invalid algorithm (alg) header parameter: token signed with unexpected "
                       "algorithm")
    claims = token.claims
    if issuer and claims.get("iss") != issuer:
        raise JWTError("invalid issuer (iss) claim")
    if subject and claims.get("sub") != subject:
        raise JWTError("invalid subject (sub) claim")
    if audiences and not set(audiences) & set(_audiences(claims)):
        raise JWTError("invalid audience (aud) claim: audience claim does not match any "
                       "expected audience")
    iat, exp, nbf = (_number(claims, name) for name in ("iat", "exp", "nbf"))
    if not (iat or exp or nbf):
        if allow_missing_times:
            return claims
        raise JWTError("no issued at (iat), not before (nbf), or expiration time (exp) claims "
                       "in token")
    exp = exp or max(iat, nbf) + exp_leeway
    nbf = nbf or iat or exp - nbf_leeway
    if now + skew < nbf:
        raise JWTError("invalid not before (nbf) claim: token not yet valid")
    if now - skew > exp:
        raise JWTError("invalid expiration time (exp) claim: token is expired")
    if iat and now + skew < iat:
        raise JWTError("invalid issued at (iat) claim: token issued in the future")
    return claims
