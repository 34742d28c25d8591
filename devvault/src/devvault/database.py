"""The database engine, without a database: ``creds/{role}`` issues leased username/password pairs.

Reference: vault-http-api.md §5.3. Connection configs and role statements are stored and
ignored; each read of ``creds/{role}`` creates a fresh user under a renewable lease of the role's
``default_ttl`` (capped by ``max_ttl``, both falling back to the mount's TTLs). When the lease
ends (revoked, expired, or its token revoked) the user is dropped, so
:meth:`DatabaseBackend.check` is how a test asks whether a password still works.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from devvault.mounts import Mount, route, unsupported_op
from devvault.params import get_duration, get_list, get_str, random_text
from devvault.wire import Reply, Request, VaultError, no_content, ok

if TYPE_CHECKING:
    from devvault.core import Core

__all__ = ["DatabaseBackend", "DatabaseRole"]

_ROUTES = [
    (r"config", "configs"),
    (r"config/(?P<name>[^/]+)", "config"),
    (r"roles", "roles"),
    (r"roles/(?P<name>[^/]+)", "role"),
    (r"creds/(?P<name>[^/]+)", "creds"),
    (r"(?:reset|rotate-root)/(?P<name>[^/]+)", "noop"),
]
_STATEMENTS = ("creation_statements", "revocation_statements", "rollback_statements",
               "renew_statements")


@dataclass(slots=True, kw_only=True)
class DatabaseRole:
    db_name: str
    default_ttl: int = 0
    max_ttl: int = 0
    statements: dict[str, list[str]] = field(default_factory=dict)

    def data(self) -> dict[str, Any]:
        return {
            "credential_type": "password",
            "db_name": self.db_name,
            "default_ttl": self.default_ttl,
            "max_ttl": self.max_ttl,
            **{name: self.statements.get(name, []) for name in _STATEMENTS},
        }


class DatabaseBackend:
    """One database mount; ``users`` maps each live username to its password."""

    unauthenticated_paths: frozenset[str] = frozenset()

    def __init__(self, core: Core) -> None:
        self._core = core
        self.configs: dict[str, dict[str, Any]] = {}
        self.roles: dict[str, DatabaseRole] = {}
        self.users: dict[str, str] = {}

    def check(self, username: str, password: str) -> bool:
        """True while ``username`` exists with ``password`` (its lease has not ended)."""
        return self.users.get(username) == password

    def _drop(self, username: str) -> None:
        self.users.pop(username, None)

    def handle(self, req: Request, rel: str, mount: Mount) -> Reply:
        name, args = route(rel, _ROUTES)
        if name in ("configs", "roles"):
            table: dict[str, Any] = self.configs if name == "configs" else self.roles
            if req.op != "list":
                raise unsupported_op()
            if not table:
                raise VaultError(404)
            return ok(req, {"keys": sorted(table)})
        if name == "config":
            return self._config(req, args["name"])
        if name == "role":
            return self._role(req, args["name"])
        if name == "creds" and req.op in ("read", "head"):
            return self._creds(req, args["name"], mount)
        if name == "noop" and req.op == "update":
            return no_content()
        raise unsupported_op()

    def _config(self, req: Request, name: str) -> Reply:
        if req.op == "update":
            config = dict(req.data)
            config.pop("password", None)  # never echo a connection password back
            self.configs[name] = config
            return no_content()
        if req.op == "read":
            if name not in self.configs:
                raise VaultError(404)
            config = self.configs[name]
            return ok(req, {
                "allowed_roles": get_list(config, "allowed_roles"),
                "connection_details": {
                    key: value for key, value in config.items()
                    if key not in ("plugin_name", "allowed_roles", "verify_connection")
                },
                "plugin_name": get_str(config, "plugin_name"),
            })
        if req.op == "delete":
            self.configs.pop(name, None)
            return no_content()
        raise unsupported_op()

    def _role(self, req: Request, name: str) -> Reply:
        if req.op == "read":
            role = self.roles.get(name)
            if role is None:
                raise VaultError(404)
            return ok(req, role.data())
        if req.op == "update":
            old = self.roles.get(name)
            db_name = get_str(req.data, "db_name", old.db_name if old else "")
            if not db_name:
                raise VaultError(400, "empty database name attribute")
            role = DatabaseRole(
                db_name=db_name,
                default_ttl=get_duration(req.data, "default_ttl", old.default_ttl if old else 0),
                max_ttl=get_duration(req.data, "max_ttl", old.max_ttl if old else 0),
                statements={stmt: get_list(req.data, stmt, old.statements.get(stmt) if old
                                           else None) for stmt in _STATEMENTS},
            )
            self.roles[name] = role
            return no_content()
        if req.op == "delete":
            self.roles.pop(name, None)
            return no_content()
        raise unsupported_op()

    def _creds(self, req: Request, name: str, mount: Mount) -> Reply:
        role = self.roles.get(name)
        if role is None:
            raise VaultError(400, f"unknown role: {name}")
        core, token = self._core, req.token_entry
        display = (token.display_name if token else "token")[:8]
        username = (f"v-{display}-{name[:8]}-{random_text(20)}-"
                    f"{int(core.clock.now())}")
        password = "A1a-" + random_text(16)
        self.users[username] = password
        max_ttl = min(role.max_ttl or mount.max_ttl, mount.max_ttl)
        lease = core.leases.create(
            f"{mount.path}creds/{name}", ttl=role.default_ttl or mount.default_ttl,
            max_ttl=max_ttl, renewable=True,
            token_accessor=token.accessor if token is not None and not token.root else None,
            on_end=lambda: self._drop(username), namespace=mount.namespace,
            namespace_id=core.namespace_id(mount.namespace),
        )
        return ok(req, {"password": password, "username": username}, lease_id=lease.id,
                  renewable=True, lease_duration=lease.ttl)
