"""Kubernetes auth (vault-http-api.md §4.3): local JWT verification with pem_keys."""

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
Claims = Callable[..., dict[str, Any]]


@pytest.fixture
def k8s(client: hvac.Client, rsa_signer: Signer, ec_signer: Signer) -> hvac.Client:
    """kubernetes/ enabled, configured with both signers' keys, role "app"."""
    client.sys.enable_auth_method("kubernetes")
    client.auth.kubernetes.configure("https://kubernetes.default.svc",
                                     pem_keys=[rsa_signer.cert_pem, ec_signer.cert_pem])
    client.auth.kubernetes.create_role("app", bound_service_account_names=["app"],
                                       bound_service_account_namespaces=["default"],
                                       policies=["app-read"], ttl="1h")
    return client


def login(vault: DevVault, jwt: str, role: str = "app") -> dict[str, Any]:
    got: dict[str, Any] = hvac.Client(url=vault.address).auth.kubernetes.login(role, jwt)
    return got


def test_login_with_legacy_token(vault: DevVault, k8s: hvac.Client, rsa_signer: Signer,
                                 sa_claims: Claims) -> None:
    """§4.3 an RS256 legacy SA token logs in; metadata names the service account."""
    auth = login(vault, rsa_signer.sign(sa_claims()))["auth"]
    assert auth["policies"] == ["app-read", "default"]
    assert auth["lease_duration"] == 3600
    assert auth["metadata"] == {
        "role": "app", "service_account_name": "app", "service_account_namespace": "default",
        "service_account_secret_name": "app-token-abcde",
        "service_account_uid": "7f6f2a7c-0000-4000-8000-000000000001"}


def test_login_with_projected_es256_token(vault: DevVault, k8s: hvac.Client,
                                          ec_signer: Signer, projected_claims: Claims) -> None:
    """§4.3 an ES256 projected token (nested kubernetes.io claim) logs in; no secret name."""
    auth = login(vault, ec_signer.sign(projected_claims()))["auth"]
    assert auth["metadata"]["service_account_secret_name"] == ""
    assert auth["metadata"]["service_account_name"] == "app"


def test_bare_public_key_pem_is_accepted(vault: DevVault, client: hvac.Client,
                                         rsa_signer: Signer, sa_claims: Claims) -> None:
    """§4.3 pem_keys may be PUBLIC KEY PEMs too (hvac's configure only lets certificates by)."""
    client.sys.enable_auth_method("kubernetes")
    client.write("auth/kubernetes/config", kubernetes_host="https://k",
                 pem_keys=[rsa_signer.pem])
    client.auth.kubernetes.create_role("app", bound_service_account_names=["app"],
                                       bound_service_account_namespaces=["default"])
    assert login(vault, rsa_signer.sign(sa_claims()))["auth"]["client_token"]


def test_bad_signature_is_403_permission_denied(vault: DevVault, k8s: hvac.Client,
                                                stranger: Signer, sa_claims: Claims) -> None:
    """§4.3 a token signed by an unknown key: 403 "permission denied"."""
    with pytest.raises(exceptions.Forbidden) as info:
        login(vault, stranger.sign(sa_claims()))
    assert info.value.errors == ["permission denied"]


def test_malformed_jwt_is_403(vault: DevVault, k8s: hvac.Client) -> None:
    """§4.3 a malformed JWT is 403."""
    with pytest.raises(exceptions.Forbidden):
        login(vault, "not-a-jwt")


def test_expired_jwt_is_403_with_validator_message(vault: DevVault, k8s: hvac.Client,
                                                   rsa_signer: Signer,
                                                   sa_claims: Claims) -> None:
    """§4.3 an expired token: 403 with cap's message."""
    with pytest.raises(exceptions.Forbidden) as info:
        login(vault, rsa_signer.sign(sa_claims(exp_in=-3600)))
    assert info.value.errors == ["invalid expiration time (exp) claim: token is expired"]


def test_token_expires_on_the_server_clock(vault: DevVault, k8s: hvac.Client,
                                           rsa_signer: Signer, sa_claims: Claims) -> None:
    """§4.3 exp is checked against the server clock (advance_clock), with 60 s leeway."""
    jwt = rsa_signer.sign(sa_claims(exp_in=600))
    vault.advance_clock(700)
    with pytest.raises(exceptions.Forbidden, match="token is expired"):
        login(vault, jwt)


def test_unbound_service_account_name_is_403(vault: DevVault, k8s: hvac.Client,
                                             rsa_signer: Signer, sa_claims: Claims) -> None:
    """§4.3 a name not bound to the role: 403 "service account name not authorized"."""
    with pytest.raises(exceptions.Forbidden) as info:
        login(vault, rsa_signer.sign(sa_claims(name="other")))
    assert info.value.errors == ["service account name not authorized"]


def test_unbound_namespace_is_403(vault: DevVault, k8s: hvac.Client, rsa_signer: Signer,
                                  sa_claims: Claims) -> None:
    """§4.3 a namespace not bound to the role: 403 "namespace not authorized"."""
    with pytest.raises(exceptions.Forbidden) as info:
        login(vault, rsa_signer.sign(sa_claims(namespace="prod")))
    assert info.value.errors == ["namespace not authorized"]


def test_wildcard_bindings_allow_any(vault: DevVault, k8s: hvac.Client, rsa_signer: Signer,
                                     sa_claims: Claims) -> None:
    """§4.3 "*" for names and namespaces allows any service account."""
    k8s.auth.kubernetes.create_role("any", bound_service_account_names="*",
                                    bound_service_account_namespaces="*")
    got = login(vault, rsa_signer.sign(sa_claims(name="x", namespace="y")), role="any")
    assert got["auth"]["metadata"]["service_account_namespace"] == "y"


def test_audience_mismatch_is_403(vault: DevVault, k8s: hvac.Client, ec_signer: Signer,
                                  projected_claims: Claims) -> None:
    """§4.3 a role audience the token lacks: 403 invalid audience."""
    k8s.auth.kubernetes.create_role("aud", bound_service_account_names=["app"],
                                    bound_service_account_namespaces=["default"],
                                    audience="vault")
    login(vault, ec_signer.sign(projected_claims(audience="vault")), role="aud")
    with pytest.raises(exceptions.Forbidden, match=r"invalid audience \(aud\) claim"):
        login(vault, ec_signer.sign(projected_claims(audience="api")), role="aud")


def test_issuer_checked_when_validation_enabled(vault: DevVault, k8s: hvac.Client,
                                                raw: Raw, rsa_signer: Signer,
                                                sa_claims: Claims) -> None:
    """§4.3 issuer is enforced only with disable_iss_validation=false (Vault's default: true)."""
    jwt = rsa_signer.sign(sa_claims(iss="https://elsewhere"))
    raw("POST", "/v1/auth/kubernetes/config", json={
        "kubernetes_host": "https://k", "pem_keys": [rsa_signer.pem], "issuer": "https://k8s"})
    login(vault, jwt)
    raw("POST", "/v1/auth/kubernetes/config", json={
        "kubernetes_host": "https://k", "pem_keys": [rsa_signer.pem], "issuer": "https://k8s",
        "disable_iss_validation": False})
    with pytest.raises(exceptions.Forbidden) as info:
        login(vault, jwt)
    assert info.value.errors == ["invalid issuer (iss) claim"]


def test_unknown_role_is_400(vault: DevVault, k8s: hvac.Client, rsa_signer: Signer,
                             sa_claims: Claims) -> None:
    """§4.3 an unknown role: 400 invalid role name "x"."""
    with pytest.raises(exceptions.InvalidRequest) as info:
        login(vault, rsa_signer.sign(sa_claims()), role="x")
    assert info.value.errors == ['invalid role name "x"']


def test_missing_jwt_is_400(raw: Raw, k8s: hvac.Client) -> None:
    """§4.3 an empty jwt: 400 "missing jwt"; an empty role: "missing role"."""
    resp = raw("POST", "/v1/auth/kubernetes/login", token="", json={"role": "app", "jwt": ""})
    assert resp.json() == {"errors": ["missing jwt"]}
    resp = raw("POST", "/v1/auth/kubernetes/login", token="", json={"jwt": "x"})
    assert resp.json() == {"errors": ["missing role"]}


def test_without_pem_keys_login_is_denied(vault: DevVault, client: hvac.Client,
                                          rsa_signer: Signer, sa_claims: Claims) -> None:
    """§4.3 no pem_keys means no TokenReview here: 403 permission denied."""
    client.sys.enable_auth_method("kubernetes")
    client.auth.kubernetes.configure("https://kubernetes.default.svc")
    client.auth.kubernetes.create_role("app", bound_service_account_names=["app"],
                                       bound_service_account_namespaces=["default"])
    with pytest.raises(exceptions.Forbidden, match="permission denied"):
        login(vault, rsa_signer.sign(sa_claims()))


def test_config_requires_kubernetes_host(raw: Raw, client: hvac.Client) -> None:
    """§4.3 config without kubernetes_host is 400 "no host provided"."""
    client.sys.enable_auth_method("kubernetes")
    resp = raw("POST", "/v1/auth/kubernetes/config", json={"pem_keys": []})
    assert resp.json() == {"errors": ["no host provided"]}


def test_role_requires_bound_names(raw: Raw, k8s: hvac.Client) -> None:
    """§4.3 a role without bound_service_account_names is 400."""
    resp = raw("POST", "/v1/auth/kubernetes/role/bad",
               json={"bound_service_account_namespaces": ["default"]})
    assert resp.status_code == 400


def test_subject_only_token_names_the_account(vault: DevVault, k8s: hvac.Client,
                                              rsa_signer: Signer) -> None:
    """§4.3 a token with only sub=system:serviceaccount:NS:NAME (and a uid) is understood."""
    claims = {"sub": "system:serviceaccount:default:app", "exp": int(time.time()) + 60,
              "kubernetes.io/serviceaccount/service-account.uid": "u-1"}
    auth = login(vault, rsa_signer.sign(claims))["auth"]
    assert auth["metadata"]["service_account_name"] == "app"
