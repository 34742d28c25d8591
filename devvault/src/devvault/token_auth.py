"""The ``auth/token/`` backend: create (also against a role), lookup, renew and revoke (self, by
token, by accessor), and token roles. A lookup by accessor never returns the token itself."""

from __future__ import annotations

from typing import TYPE_CHECKING

from devvault.mounts import Mount, route, unsupported_op
from devvault.params import get_bool, get_duration, get_int, get_list, get_map, get_str
from devvault.token_roles import TokenRole
from devvault.tokens import Token, auth_block, sanitize_policies
from devvault.wire import Reply, Request, VaultError, no_content, ok

if TYPE_CHECKING:
    from devvault.core import Core

__all__ = ["TokenBackend"]

_ROUTES = [
    (r"create(?:/(?P<role>.+))?", "create"),
    (r"create-orphan", "create-orphan"),
    (r"lookup-self", "lookup-self"),
    (r"lookup", "lookup"),
    (r"lookup-accessor", "lookup-accessor"),
    (r"renew-self", "renew-self"),
    (r"renew", "renew"),
    (r"revoke-self", "revoke-self"),
    (r"revoke", "revoke"),
    (r"revoke-accessor", "revoke-accessor"),
    (r"roles", "roles"),
    (r"roles/(?P<name>[^/]+)", "role"),
]


class TokenBackend:
    """``auth/token/``: create, lookup, renew and revoke (self, by token, by accessor)."""

    unauthenticated_paths: frozenset[str] = frozenset()

    def __init__(self, core: Core) -> None:
        self._core = core
        self._roles: dict[str, TokenRole] = {}

    def handle(self, req: Request, rel: str, mount: Mount) -> Reply:
        name, args = route(rel, _ROUTES)
        caller = req.token_entry
        if caller is None:  # the router only lets authenticated requests in here
            raise VaultError(403, "permission denied")
        if name in ("roles", "role"):
            return self._role(req, args.get("name", "").lower())
        if name.startswith("create"):
            if req.op != "update":
                raise unsupported_op()
            role = None
            if "role" in args:
                role = self._roles.get(args["role"].lower())
                if role is None:
                    raise VaultError(400, f"unknown role {args['role']}")
            return self._create(req, caller, orphan=name == "create-orphan", role=role)
        if name.startswith("lookup") and req.op not in ("read", "update"):
            raise unsupported_op()
        if not name.startswith("lookup") and req.op != "update":
            raise unsupported_op()
        tokens = self._core.tokens
        now = self._core.clock.now()
        target = caller if name.endswith("-self") else self._target(req, name)
        if name.startswith("lookup"):
            return ok(req, tokens.lookup_data(target, now, by_accessor=name.endswith("-accessor")))
        if name.startswith("renew"):
            granted, warnings = tokens.renew(target, get_duration(req.data, "increment"))
            return ok(req, None, auth=auth_block(target, granted), warnings=warnings)
        tokens.revoke(target)
        return no_content()

    def _target(self, req: Request, name: str) -> Token:
        tokens = self._core.tokens
        if name.endswith("-accessor"):
            accessor = get_str(req.data, "accessor")
            if not accessor:
                raise VaultError(400, "missing accessor")
            target = tokens.by_accessor(accessor)
            if target is None:
                raise VaultError(400, "invalid accessor")
            return target
        token_id = get_str(req.data, "token")
        if not token_id:
            raise VaultError(400, "missing token")
        target = tokens.lookup(token_id)
        if target is None:
            raise VaultError(403, "bad token")
        return target

    def _role(self, req: Request, name: str) -> Reply:
        if not name:
            if req.op != "list":
                raise unsupported_op()
            if not self._roles:
                raise VaultError(404)
            return ok(req, {"keys": sorted(self._roles)})
        role = self._roles.get(name)
        if req.op == "read":
            if role is None:
                raise VaultError(404)
            return ok(req, role.data())
        if req.op == "update":
            role = role or TokenRole(name=name)
            role.update(req.data)
            self._roles[name] = role
            return no_content()
        if req.op == "delete":
            self._roles.pop(name, None)
            return no_content()
        raise unsupported_op()

    def _create(self, req: Request, parent: Token, *, orphan: bool,
                role: TokenRole | None = None) -> Reply:
        core, data = self._core, req.data
        privileged = parent.root or "root" in parent.policies
        if role is not None and role.orphan:
            orphan = True
        no_parent = orphan or get_bool(data, "no_parent")
        token_id = get_str(data, "id") or None
        period = get_duration(data, "period")
        if no_parent and not orphan and not privileged:
            raise VaultError(400, "root or sudo privileges required to create orphan token")
        if token_id and not privileged:
            raise VaultError(400, "root or sudo privileges required to specify token id")
        if period and not privileged and role is None:
            raise VaultError(400, "root or sudo privileges required to create periodic token")
        requested = get_list(data, "policies")
        if role is not None and role.allowed_policies:
            requested = role.policies(requested)
        else:
            if role is not None:
                requested = role.policies(requested)
            if requested and not privileged and not set(requested) - {"default"} <= set(
                    parent.policies):
                raise VaultError(400, "child policies must be subset of parent")
        if get_str(data, "type", "service") not in ("service", "default", ""):
            raise VaultError(400, "dev server: only service tokens are supported")
        no_default = get_bool(data, "no_default_policy") or bool(role and role.no_default_policy)
        policies = sanitize_policies(requested or parent.policies, add_default=not no_default)
        name = get_str(data, "display_name")
        meta = get_map(data, "meta")
        explicit_max_ttl = get_duration(data, "explicit_max_ttl")
        renewable = get_bool(data, "renewable", True)
        path = "auth/token/create-orphan" if orphan else "auth/token/create"
        num_uses = get_int(data, "num_uses")
        if role is not None:
            period = role.period or period
            if role.explicit_max_ttl:
                explicit_max_ttl = min(x for x in (explicit_max_ttl, role.explicit_max_ttl) if x)
            renewable = renewable and role.renewable
            path = role.path
            num_uses = num_uses or role.num_uses
        token = core.tokens.issue(
            policies=policies, ttl=get_duration(data, "ttl"),
            explicit_max_ttl=explicit_max_ttl, period=period,
            renewable=renewable, num_uses=num_uses,
            display_name=f"token-{name}" if name else "token",
            meta={str(k): str(v) for k, v in meta.items()} if meta else None,
            path=path, parent=None if no_parent else parent, token_id=token_id,
            namespace=req.namespace, role=role.name if role else "",
        )
        store = core.policy_store(req.namespace)
        warnings = [f'Policy "{name}" does not exist' for name in policies
                    if store.get(name) is None]
        return ok(req, None, auth=auth_block(token), warnings=warnings)
