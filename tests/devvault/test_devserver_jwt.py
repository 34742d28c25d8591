"""JWT auth (vault-http-api.md §4.4): an invalid token is 400 here, not 403."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import hvac
import pytest
import requests
from hvac import exceptions

from devvault import DevVault

if TYPE_CHECKING:
    from conftest import Signer

Raw = Callable[..., requests.Response]
ISSUER = "https://ci.example.com"


def claims(**extra: Any) -> dict[str, Any]:
    now = int(time.time())
    out: dict[str, Any] = {"iss": ISSUER, "sub": "repo:org/app", "aud": "vault",
                           "iat": now, "exp": now + 600, "env": "prod"}
    out.update(extra)
    return out


@pytest.fixture
def jwt_auth(client: hvac.Client, rsa_signer: Signer) -> hvac.Client:
    """jwt/ enabled with the RSA signer's key, bound_issuer, role "ci"."""
    client.sys.enable_auth_method("jwt")
    client.auth.jwt.configure(jwt_validation_pubkeys=[rsa_signer.pem], bound_issuer=ISSUER)
    client.auth.jwt.create_role("ci", user_claim="sub", allowed_redirect_uris=None,
                                role_type="jwt", bound_audiences=["vault"],
                                bound_claims={"env": "prod"},
                                claim_mappings={"env": "environment"},
                                token_policies=["ci"], token_ttl="15m")
    return client


def login(vault: DevVault, jwt: str, role: str | None = "ci") -> dict[str, Any]:
    got: dict[str, Any] = hvac.Client(url=vault.address).auth.jwt.jwt_login(role, jwt)
    return got


def test_login_returns_token_with_role_metadata(vault: DevVault, jwt_auth: hvac.Client,
                                                rsa_signer: Signer) -> None:
    """§4.4 a valid token logs in: metadata.role plus claim_mappings, token_ttl applied."""
    auth = login(vault, rsa_signer.sign(claims()))["auth"]
    assert auth["metadata"] == {"role": "ci", "environment": "prod"}
    assert auth["policies"] == ["ci", "default"]
    assert auth["lease_duration"] == 900


def test_bad_signature_is_400(vault: DevVault, jwt_auth: hvac.Client,
                              stranger: Signer) -> None:
    """§4.4 a token signed by an unknown key: 400 "error validating token: …"."""
    with pytest.raises(exceptions.InvalidRequest) as info:
        login(vault, stranger.sign(claims(), alg="ES256"))
    assert info.value.errors[0].startswith("error validating token: ")


def test_malformed_token_is_400(vault: DevVault, jwt_auth: hvac.Client) -> None:
    """§4.4 a malformed JWT is 400 InvalidRequest."""
    with pytest.raises(exceptions.InvalidRequest, match="error validating token"):
        login(vault, "a.b")


def test_expired_token_is_400(vault: DevVault, jwt_auth: hvac.Client,
                              rsa_signer: Signer) -> None:
    """§4.4 an expired token: 400 with cap's expiry message."""
    with pytest.raises(exceptions.InvalidRequest) as info:
        login(vault, rsa_signer.sign(claims(exp=int(time.time()) - 3600)))
    assert info.value.errors == [
        "error validating token: invalid expiration time (exp) claim: token is expired"]


def test_wrong_issuer_is_400(vault: DevVault, jwt_auth: hvac.Client,
                             rsa_signer: Signer) -> None:
    """§4.4 a token from another issuer than bound_issuer is 400."""
    with pytest.raises(exceptions.InvalidRequest, match=r"invalid issuer \(iss\) claim"):
        login(vault, rsa_signer.sign(claims(iss="https://evil")))


def test_wrong_audience_is_400(vault: DevVault, jwt_auth: hvac.Client,
                               rsa_signer: Signer) -> None:
    """§4.4 an audience outside bound_audiences is 400."""
    with pytest.raises(exceptions.InvalidRequest, match=r"invalid audience \(aud\) claim"):
        login(vault, rsa_signer.sign(claims(aud="other")))


def test_bound_claim_mismatch_is_400(vault: DevVault, jwt_auth: hvac.Client,
                                     rsa_signer: Signer) -> None:
    """§4.4 bound_claims are simple equality; a mismatch is 400."""
    with pytest.raises(exceptions.InvalidRequest, match="error validating claims"):
        login(vault, rsa_signer.sign(claims(env="dev")))


def test_unexpected_algorithm_is_400(vault: DevVault, client: hvac.Client,
                                     ec_signer: Signer) -> None:
    """§4.4 jwt_supported_algs defaults to RS256: an ES256 token is refused."""
    client.sys.enable_auth_method("jwt")
    client.auth.jwt.configure(jwt_validation_pubkeys=[ec_signer.pem])
    client.auth.jwt.create_role("ci", user_claim="sub", allowed_redirect_uris=None,
                                role_type="jwt", bound_audiences=["vault"])
    with pytest.raises(exceptions.InvalidRequest, match="unexpected algorithm"):
        login(vault, ec_signer.sign(claims()))


def test_unknown_role_is_400(vault: DevVault, jwt_auth: hvac.Client,
                             rsa_signer: Signer) -> None:
    """§4.4 an unknown role: 400 role "x" could not be found."""
    with pytest.raises(exceptions.InvalidRequest) as info:
        login(vault, rsa_signer.sign(claims()), role="x")
    assert info.value.errors == ['role "x" could not be found']


def test_missing_role_without_default_is_400(raw: Raw, jwt_auth: hvac.Client,
                                             rsa_signer: Signer) -> None:
    """§4.4 no role and no default_role: 400 "missing role"."""
    resp = raw("POST", "/v1/auth/jwt/login", token="", json={"jwt": rsa_signer.sign(claims())})
    assert resp.json() == {"errors": ["missing role"]}


def test_default_role_is_used(raw: Raw, jwt_auth: hvac.Client, rsa_signer: Signer) -> None:
    """§4.4 with default_role configured, login may omit the role."""
    jwt_auth.auth.jwt.configure(jwt_validation_pubkeys=[rsa_signer.pem], bound_issuer=ISSUER,
                                default_role="ci")
    resp = raw("POST", "/v1/auth/jwt/login", token="", json={"jwt": rsa_signer.sign(claims())})
    assert resp.status_code == 200


def test_missing_token_is_400(raw: Raw, jwt_auth: hvac.Client) -> None:
    """§4.4 an empty jwt: 400 "missing token"."""
    resp = raw("POST", "/v1/auth/jwt/login", token="", json={"role": "ci", "jwt": ""})
    assert resp.json() == {"errors": ["missing token"]}


def test_role_type_defaults_to_oidc(client: hvac.Client) -> None:
    """§4.4 a role written without role_type is an OIDC role, which needs redirect URIs."""
    client.sys.enable_auth_method("jwt")
    with pytest.raises(exceptions.InvalidRequest, match="allowed_redirect_uris"):
        client.adapter.post("/v1/auth/jwt/role/r", json={"user_claim": "sub",
                                                          "bound_audiences": ["vault"]})


def test_jwt_role_needs_a_bound_constraint(client: hvac.Client) -> None:
    """§4.4 a jwt role with no audience, subject or claims bound is refused."""
    client.sys.enable_auth_method("jwt")
    with pytest.raises(exceptions.InvalidRequest, match="at least one bound constraint"):
        client.auth.jwt.create_role("r", user_claim="sub", allowed_redirect_uris=None)
