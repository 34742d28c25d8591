"""The Kubernetes auth method, verifying service-account JWTs locally (vault-http-api.md §4.3).

There is no Kubernetes API here, so the TokenReview step cannot run: a login succeeds only when
``pem_keys`` is configured and one of them verifies the token's signature. Without ``pem_keys``
every login gets 403 ``permission denied``, which is what Vault answers when TokenReview fails.
Issuer validation follows Vault: ``issuer`` is checked only with ``disable_iss_validation=false``
(the default is true). Time claims get cap's 60 s clock-skew leeway.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from devvault import jose
from devvault.mounts import Mount, unsupported_op
from devvault.params import get_bool, get_list, get_str
from devvault.role_auth import RoleAuthBackend
from devvault.tokens import TokenParams, auth_block
from devvault.wire import Reply, Request, VaultError, no_content, ok

if TYPE_CHECKING:
    pass

__all__ = ["KubernetesBackend", "glob_match"]

logger = logging.getLogger(__name__)

_ROUTES = [
    (r"login", "login"),
    (r"config", "config"),
    (r"role", "roles"),
    (r"role/(?P<name>[^/]+)", "role"),
]


def glob_match(patterns: list[str], value: str) -> bool:
    """go-glob matching: ``*`` matches any run of characters, nothing else is special."""
    return any(re.fullmatch(".*".join(re.escape(p) for p in pattern.split("*")), value)
               for pattern in patterns)


@dataclass(slots=True, kw_only=True)
class _Config:
    kubernetes_host: str
    kubernetes_ca_cert: str = ""
    token_reviewer_jwt_set: bool = False
    pem_keys: list[str] = field(default_factory=list)
    keys: list[jose.PublicKey] = field(default_factory=list)
    issuer: str = ""
    disable_iss_validation: bool = True
    disable_local_ca_jwt: bool = False


@dataclass(slots=True, kw_only=True)
class _Role:
    names: list[str]
    namespaces: list[str]
    audience: str = ""
    alias_name_source: str = "serviceaccount_uid"
    token: TokenParams = field(default_factory=TokenParams)

    def data(self) -> dict[str, Any]:
        return {
            "alias_name_source": self.alias_name_source,
            "audience": self.audience,
            "bound_service_account_names": self.names,
            "bound_service_account_namespaces": self.namespaces,
            **self.token.data(),
        }


class KubernetesBackend(RoleAuthBackend[_Config, _Role]):
    """One Kubernetes auth mount."""

    routes = _ROUTES

    def _configure(self, req: Request) -> Reply:
        if req.op == "read":
            if self._config is None:
                raise VaultError(404)
            config = self._config
            return ok(req, {
                "disable_iss_validation": config.disable_iss_validation,
                "disable_local_ca_jwt": config.disable_local_ca_jwt,
                "issuer": config.issuer,
                "kubernetes_ca_cert": config.kubernetes_ca_cert,
                "kubernetes_host": config.kubernetes_host,
                "pem_keys": config.pem_keys,
                "token_reviewer_jwt_set": config.token_reviewer_jwt_set,
            })
        if req.op != "update":
            raise unsupported_op()
        data = req.data
        host = get_str(data, "kubernetes_host")
        if not host:
            raise VaultError(400, "no host provided")
        pem_keys = get_list(data, "pem_keys") if not isinstance(data.get("pem_keys"), str) else [
            data["pem_keys"]]
        try:
            keys = jose.load_public_keys(pem_keys)
        except ValueError as exc:
            raise VaultError(400, str(exc)) from exc
        self._config = _Config(
            kubernetes_host=host, kubernetes_ca_cert=get_str(data, "kubernetes_ca_cert"),
            token_reviewer_jwt_set=bool(get_str(data, "token_reviewer_jwt")),
            pem_keys=pem_keys, keys=keys, issuer=get_str(data, "issuer"),
            disable_iss_validation=get_bool(data, "disable_iss_validation", True),
            disable_local_ca_jwt=get_bool(data, "disable_local_ca_jwt"),
        )
        return no_content()

    def _write_role(self, req: Request, name: str, role: _Role | None) -> _Role:
        data = req.data
        names = get_list(data, "bound_service_account_names", role.names if role else [])
        namespaces = get_list(data, "bound_service_account_namespaces",
                              role.namespaces if role else [])
        if not names:
            raise VaultError(400, '"bound_service_account_names" can not be empty')
        if not namespaces:
            raise VaultError(400, '"bound_service_account_namespaces" can not be empty')
        for field_name, values in (("bound_service_account_names", names),
                                   ("bound_service_account_namespaces", namespaces)):
            if len(values) > 1 and "*" in values:
                raise VaultError(400, f'"{field_name}" can not contain * and other values')
        return _Role(
            names=names, namespaces=namespaces,
            audience=get_str(data, "audience", role.audience if role else ""),
            alias_name_source=get_str(data, "alias_name_source",
                                      role.alias_name_source if role else "serviceaccount_uid"),
            token=TokenParams.parse(data, role.token if role else None),
        )

    def _login(self, req: Request, mount: Mount) -> Reply:
        role_name = get_str(req.data, "role").lower()
        jwt_text = get_str(req.data, "jwt")
        if not role_name:
            raise VaultError(400, "missing role")
        if not jwt_text:
            raise VaultError(400, "missing jwt")
        role = self._roles.get(role_name)
        if role is None:
            raise VaultError(400, f'invalid role name "{role_name}"')
        config = self._config
        if config is None:
            raise VaultError(500, "could not load backend configuration")
        check_iss = not config.disable_iss_validation and config.issuer
        try:
            claims = jose.validate(
                jwt_text, config.keys or None, now=self._core.clock.now(),
                issuer=config.issuer if check_iss else "",
                audiences=[role.audience] if role.audience.strip() else None,
                allow_missing_times=True,
            )
        except jose.JWTError as exc:
            if "verifying token signature" in str(exc):
                raise VaultError(403, "permission denied") from exc
            raise VaultError(403, str(exc)) from exc
        sa_name, namespace, uid, secret_name = _service_account(claims)
        if not (role.names == ["*"] or glob_match(role.names, sa_name)):
            raise VaultError(403, "service account name not authorized")
        if not (role.namespaces[0] == "*" or glob_match(role.namespaces, namespace)):
            raise VaultError(403, "namespace not authorized")
        if not config.keys:
            logger.debug("kubernetes login: no pem_keys configured and no TokenReview API here")
            raise VaultError(403, "permission denied")
        if not uid:
            raise VaultError(500, "could not parse UID from claims")
        token = self._core.tokens.issue_login(
            role.token, mount, display_name=f"{namespace}-{sa_name}",
            meta={"role": role_name, "service_account_name": sa_name,
                  "service_account_namespace": namespace,
                  "service_account_secret_name": secret_name, "service_account_uid": uid},
        )
        return ok(req, None, auth=auth_block(token))


def _service_account(claims: dict[str, Any]) -> tuple[str, str, str, str]:
    """Returns (name, namespace, uid, secret name) from a legacy or a projected token."""
    nested = claims.get("kubernetes.io")
    if isinstance(nested, dict):
        account = nested.get("serviceaccount") or {}
        return (str(account.get("name", "")), str(nested.get("namespace", "")),
                str(account.get("uid", "")), "")
    prefix = "kubernetes.io/serviceaccount/"
    name = str(claims.get(prefix + "service-account.name", ""))
    namespace = str(claims.get(prefix + "namespace", ""))
    subject = str(claims.get("sub", "")).split(":")
    if not name and len(subject) == 4 and subject[:2] == ["system", "serviceaccount"]:
        namespace, name = subject[2], subject[3]  # a minimal token carrying only ``sub``
    return (name, namespace, str(claims.get(prefix + "service-account.uid", "")),
            str(claims.get(prefix + "secret.name", "")))
