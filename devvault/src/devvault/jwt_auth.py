"""The JWT auth method with static public keys (vault-http-api.md §4.4).

Only ``jwt_validation_pubkeys`` is supported (no OIDC discovery, no JWKS URL: there is no network
to fetch them from). ``jwt_supported_algs`` defaults to RS256 as in Vault. Roles default to
``role_type: oidc`` as in Vault, so a role for this endpoint must say ``role_type: jwt``. An invalid
token is a 400 here (403 for kubernetes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from devvault import jose
from devvault.mounts import Mount, unsupported_op
from devvault.params import get_duration, get_list, get_map, get_str
from devvault.role_auth import RoleAuthBackend
from devvault.tokens import TokenParams, auth_block
from devvault.wire import Reply, Request, VaultError, no_content, ok

if TYPE_CHECKING:
    pass

__all__ = ["JWTBackend"]

_ROUTES = [
    (r"login", "login"),
    (r"config", "config"),
    (r"role", "roles"),
    (r"role/(?P<name>[^/]+)", "role"),
]


@dataclass(slots=True, kw_only=True)
class _Config:
    pubkeys: list[str]
    keys: list[jose.PublicKey]
    bound_issuer: str = ""
    default_role: str = ""
    algs: list[str] = field(default_factory=lambda: ["RS256"])


@dataclass(slots=True, kw_only=True)
class _Role:
    role_type: str
    user_claim: str
    bound_audiences: list[str] = field(default_factory=list)
    bound_subject: str = ""
    bound_claims: dict[str, Any] = field(default_factory=dict)
    claim_mappings: dict[str, str] = field(default_factory=dict)
    clock_skew_leeway: int = 0
    expiration_leeway: int = 0
    not_before_leeway: int = 0
    allowed_redirect_uris: list[str] = field(default_factory=list)
    token: TokenParams = field(default_factory=TokenParams)

    def data(self) -> dict[str, Any]:
        return {
            "allowed_redirect_uris": self.allowed_redirect_uris,
            "bound_audiences": self.bound_audiences,
            "bound_claims": self.bound_claims or None,
            "bound_claims_type": "string",
            "bound_subject": self.bound_subject,
            "claim_mappings": self.claim_mappings or None,
            "clock_skew_leeway": self.clock_skew_leeway,
            "expiration_leeway": self.expiration_leeway,
            "not_before_leeway": self.not_before_leeway,
            "role_type": self.role_type,
            "user_claim": self.user_claim,
            **self.token.data(),
        }


def _leeway(value: int, default: float) -> float:
    """A role's leeway: 0 means cap's default, a negative value means none."""
    return default if value == 0 else max(0, value)


def _bound_claims_match(bound: dict[str, Any], claims: dict[str, Any]) -> str | None:
    """Returns an error message when a bound claim (simple equality) does not match."""
    for name, expected in bound.items():
        if name not in claims:
            return f'claim "{name}" is missing'
        allowed = {str(v) for v in (expected if isinstance(expected, list) else [expected])}
        actual = claims[name]
        values = {str(v) for v in (actual if isinstance(actual, list) else [actual])}
        if not allowed & values:
            return f'claim "{name}" does not match any associated bound claim values'
    return None


class JWTBackend(RoleAuthBackend[_Config, _Role]):
    """One JWT auth mount."""

    routes = _ROUTES

    def _configure(self, req: Request) -> Reply:
        if req.op == "read":
            if self._config is None:
                raise VaultError(404)
            return ok(req, {"bound_issuer": self._config.bound_issuer,
                            "default_role": self._config.default_role,
                            "jwt_supported_algs": self._config.algs,
                            "jwt_validation_pubkeys": self._config.pubkeys})
        if req.op != "update":
            raise unsupported_op()
        data = req.data
        if get_str(data, "oidc_discovery_url") or get_str(data, "jwks_url"):
            raise VaultError(400, "dev server: only jwt_validation_pubkeys is supported")
        raw = data.get("jwt_validation_pubkeys")
        pubkeys = [raw] if isinstance(raw, str) else get_list(data, "jwt_validation_pubkeys")
        if not pubkeys:
            raise VaultError(400, "exactly one of 'jwt_validation_pubkeys', 'jwks_url' or "
                                  "'oidc_discovery_url' must be set")
        try:
            keys = jose.load_public_keys(pubkeys)
        except ValueError as exc:
            raise VaultError(400, f"error parsing public key: {exc}") from exc
        algs = get_list(data, "jwt_supported_algs") or ["RS256"]
        if set(algs) - set(jose.ALL_ALGS):
            raise VaultError(400, f"invalid jwt_supported_algs: {', '.join(algs)}")
        self._config = _Config(pubkeys=pubkeys, keys=keys, algs=algs,
                               bound_issuer=get_str(data, "bound_issuer"),
                               default_role=get_str(data, "default_role").lower())
        return no_content()

    def _write_role(self, req: Request, name: str, old: _Role | None) -> _Role:
        data, base = req.data, old or _Role(role_type="oidc", user_claim="")
        bound_claims = get_map(data, "bound_claims")
        role = _Role(
            role_type=get_str(data, "role_type", base.role_type) or "oidc",
            user_claim=get_str(data, "user_claim", base.user_claim),
            bound_audiences=get_list(data, "bound_audiences", base.bound_audiences),
            bound_subject=get_str(data, "bound_subject", base.bound_subject),
            bound_claims=base.bound_claims if bound_claims is None else bound_claims,
            claim_mappings={str(k): str(v) for k, v in (
                get_map(data, "claim_mappings") or base.claim_mappings).items()},
            clock_skew_leeway=get_duration(data, "clock_skew_leeway", base.clock_skew_leeway),
            expiration_leeway=get_duration(data, "expiration_leeway", base.expiration_leeway),
            not_before_leeway=get_duration(data, "not_before_leeway", base.not_before_leeway),
            allowed_redirect_uris=get_list(data, "allowed_redirect_uris",
                                           base.allowed_redirect_uris),
            token=TokenParams.parse(data, base.token),
        )
        if role.role_type not in ("jwt", "oidc"):
            raise VaultError(400, f"invalid 'role_type': {role.role_type}")
        if not role.user_claim:
            raise VaultError(400, "a user claim must be defined on the role")
        if role.role_type == "oidc" and not role.allowed_redirect_uris:
            raise VaultError(400, "'allowed_redirect_uris' must be set if 'role_type' is 'oidc' "
                                  "or unspecified.")
        if role.role_type == "jwt" and not (role.bound_audiences or role.bound_subject
                                            or role.bound_claims):
            raise VaultError(400, "must have at least one bound constraint when creating/"
                                  "updating a role")
        return role

    def _login(self, req: Request, mount: Mount) -> Reply:
        config = self._config
        if config is None:
            raise VaultError(400, "could not load configuration")
        role_name = get_str(req.data, "role").lower() or config.default_role
        if not role_name:
            raise VaultError(400, "missing role")
        role = self._roles.get(role_name)
        if role is None:
            raise VaultError(400, f'role "{role_name}" could not be found')
        if role.role_type == "oidc":
            raise VaultError(400, "role with oidc role_type is not allowed")
        jwt_text = get_str(req.data, "jwt")
        if not jwt_text:
            raise VaultError(400, "missing token")
        try:
            claims = jose.validate(
                jwt_text, config.keys, now=self._core.clock.now(), issuer=config.bound_issuer,
                subject=role.bound_subject, audiences=role.bound_audiences,
                algorithms=config.algs, skew=_leeway(role.clock_skew_leeway, 60),
                exp_leeway=_leeway(role.expiration_leeway, 150),
                nbf_leeway=_leeway(role.not_before_leeway, 150),
            )
        except jose.JWTError as exc:
            raise VaultError(400, f"error validating token: {exc}") from exc
        if claims.get("aud") and not role.bound_audiences:
            raise VaultError(400, "audience claim found in JWT but no audiences bound to the role")
        problem = _bound_claims_match(role.bound_claims, claims)
        if problem:
            raise VaultError(400, f"error validating claims: {problem}")
        user = claims.get(role.user_claim)
        if user is None:
            raise VaultError(400, f'claim "{role.user_claim}" not found in token')
        if not isinstance(user, str):
            raise VaultError(400, f'claim "{role.user_claim}" could not be converted to string')
        meta = {"role": role_name}
        meta.update({target: str(claims[source]) for source, target in
                     role.claim_mappings.items() if source in claims})
        token = self._core.tokens.issue_login(role.token, mount, display_name=user, meta=meta)
        return ok(req, None, auth=auth_block(token))
