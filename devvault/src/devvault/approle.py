"""The AppRole auth method: roles, role IDs, secret IDs and login (vault-http-api.md §4.2).

A secret ID is known by its accessor too: ``secret-id`` (LIST) lists accessors and
``secret-id-accessor/{lookup,destroy}`` act on one without knowing the secret ID. A secret ID
created with ``X-Vault-Wrap-TTL`` comes back wrapped (``wrapped_accessor`` = its accessor).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from devvault.mounts import Mount, route, unsupported_op
from devvault.params import get_bool, get_duration, get_int, get_map, get_str, rfc3339
from devvault.tokens import TokenParams, auth_block
from devvault.wire import (
    Reply,
    Request,
    VaultError,
    encode,
    envelope,
    multierror,
    new_uuid,
    no_content,
    ok,
)

if TYPE_CHECKING:
    from devvault.core import Core

__all__ = ["AppRoleBackend"]

_ROUTES = [
    (r"login", "login"),
    (r"role", "roles"),
    (r"role/(?P<name>[^/]+)", "role"),
    (r"role/(?P<name>[^/]+)/role-id", "role-id"),
    (r"role/(?P<name>[^/]+)/secret-id", "secret-id"),
    (r"role/(?P<name>[^/]+)/custom-secret-id", "custom-secret-id"),
    (r"role/(?P<name>[^/]+)/secret-id/lookup", "secret-id-lookup"),
    (r"role/(?P<name>[^/]+)/secret-id/destroy", "secret-id-destroy"),
    (r"role/(?P<name>[^/]+)/secret-id-accessor/lookup", "accessor-lookup"),
    (r"role/(?P<name>[^/]+)/secret-id-accessor/destroy", "accessor-destroy"),
]


@dataclass(slots=True, kw_only=True)
class _Role:
    name: str
    role_id: str = field(default_factory=new_uuid)
    bind_secret_id: bool = True
    secret_id_ttl: int = 0
    secret_id_num_uses: int = 0
    token: TokenParams = field(default_factory=TokenParams)


@dataclass(slots=True, kw_only=True)
class _SecretID:
    role: str
    accessor: str
    created: float
    expires: float | None
    uses_left: int
    metadata: dict[str, str]


class AppRoleBackend:
    """One AppRole mount."""

    unauthenticated_paths = frozenset({"login"})

    def __init__(self, core: Core) -> None:
        self._core = core
        self._roles: dict[str, _Role] = {}
        self._secret_ids: dict[str, _SecretID] = {}

    def handle(self, req: Request, rel: str, mount: Mount) -> Reply:
        name, args = route(rel, _ROUTES)
        if name == "login":
            if req.op != "update":
                raise unsupported_op()
            return self._login(req, mount)
        if name == "roles":
            if req.op != "list":
                raise unsupported_op()
            if not self._roles:
                raise VaultError(404)
            return ok(req, {"keys": sorted(self._roles)})
        role_name = args["name"].lower()
        if name == "role":
            return self._role(req, role_name)
        role = self._roles.get(role_name)
        if role is None:
            raise VaultError(400, f'role "{role_name}" does not exist')
        return self._role_subpath(req, name, role)

    def _role_subpath(self, req: Request, name: str, role: _Role) -> Reply:
        """``role-id``, ``secret-id``, ``custom-secret-id`` and ``secret-id/{lookup,destroy}``."""
        op = req.op
        if name == "role-id" and op == "read":
            return ok(req, {"role_id": role.role_id})
        if name == "role-id" and op == "update":
            role.role_id = get_str(req.data, "role_id") or role.role_id
            return no_content()
        if name == "secret-id" and op == "list":
            keys = sorted(s.accessor for s in self._secret_ids.values() if s.role == role.name)
            if not keys:
                raise VaultError(404)
            return ok(req, {"keys": keys})
        if name in ("secret-id", "custom-secret-id") and op == "update":
            secret_id = new_uuid() if name == "secret-id" else get_str(req.data, "secret_id")
            if not secret_id:
                raise VaultError(400, "missing secret_id")
            return self._new_secret_id(req, role, secret_id)
        secret_id = get_str(req.data, "secret_id")
        entry = self._secret_ids.get(secret_id)
        mine = entry is not None and entry.role == role.name
        if name == "secret-id-lookup" and op == "update":
            if entry is None or not mine:
                raise VaultError(404)
            return ok(req, self._secret_id_data(entry))
        if name == "secret-id-destroy" and op in ("update", "delete"):
            if mine:
                del self._secret_ids[secret_id]
            return no_content()
        if name in ("accessor-lookup", "accessor-destroy") and op in ("update", "delete"):
            return self._by_accessor(req, name, role)
        raise unsupported_op()

    def _by_accessor(self, req: Request, name: str, role: _Role) -> Reply:
        accessor = get_str(req.data, "secret_id_accessor")
        if not accessor:
            raise VaultError(400, "missing secret_id_accessor")
        found = next((k for k, v in self._secret_ids.items()
                      if v.accessor == accessor and v.role == role.name), None)
        if found is None:
            message = f'failed to find accessor entry for secret_id_accessor: "{accessor}"'
            if name == "accessor-destroy":  # a plain Go error in Vault: 500
                raise VaultError(500, multierror(message))
            # logical.RespondWithStatusCode(ErrorResponse(…), 404): an envelope, no "errors".
            body = envelope(req, data={"error": message}, mount_type="")
            return Reply(status=404, body=encode(body, newline=False))
        if name == "accessor-lookup":
            return ok(req, self._secret_id_data(self._secret_ids[found]))
        del self._secret_ids[found]
        return no_content()

    def _role(self, req: Request, name: str) -> Reply:
        role = self._roles.get(name)
        if req.op == "read":
            if role is None:
                raise VaultError(404)
            return ok(req, {
                "bind_secret_id": role.bind_secret_id,
                "local_secret_ids": False,
                "secret_id_bound_cidrs": None,
                "secret_id_num_uses": role.secret_id_num_uses,
                "secret_id_ttl": role.secret_id_ttl,
                **role.token.data(),
            })
        if req.op == "update":
            role = role or _Role(name=name)
            role.bind_secret_id = get_bool(req.data, "bind_secret_id", role.bind_secret_id)
            role.secret_id_ttl = get_duration(req.data, "secret_id_ttl", role.secret_id_ttl)
            role.secret_id_num_uses = get_int(req.data, "secret_id_num_uses",
                                              role.secret_id_num_uses)
            role.token = TokenParams.parse(req.data, role.token)
            role.role_id = get_str(req.data, "role_id") or role.role_id
            if not role.bind_secret_id:
                raise VaultError(400, "at least one constraint should be enabled on the role")
            self._roles[name] = role
            return no_content()
        if req.op == "delete":
            self._roles.pop(name, None)
            for secret_id in [k for k, v in self._secret_ids.items() if v.role == name]:
                del self._secret_ids[secret_id]
            return no_content()
        raise unsupported_op()

    def _new_secret_id(self, req: Request, role: _Role, secret_id: str) -> Reply:
        now = self._core.clock.now()
        ttl = get_duration(req.data, "ttl") or role.secret_id_ttl
        uses = get_int(req.data, "num_uses", role.secret_id_num_uses)
        meta: Any = req.data.get("metadata")
        if isinstance(meta, str) and meta.strip():
            # hvac sends the metadata map as a JSON string, as the CLI does.
            try:
                meta = json.loads(meta)
            except ValueError as exc:
                raise VaultError(400, "failed to parse metadata: " + str(exc)) from exc
        meta = get_map({"metadata": meta or None}, "metadata") or {}
        entry = _SecretID(role=role.name, accessor=new_uuid(), created=now,
                          expires=now + ttl if ttl else None, uses_left=uses,
                          metadata={str(k): str(v) for k, v in meta.items()})
        self._secret_ids[secret_id] = entry
        return ok(req, {"secret_id": secret_id, "secret_id_accessor": entry.accessor,
                        "secret_id_num_uses": uses, "secret_id_ttl": ttl})

    def _secret_id_data(self, entry: _SecretID) -> dict[str, Any]:
        return {
            "cidr_list": [],
            "creation_time": rfc3339(entry.created),
            "expiration_time": ("0001-01-01T00:00:00Z" if entry.expires is None
                                else rfc3339(entry.expires)),
            "last_updated_time": rfc3339(entry.created),
            "metadata": entry.metadata,
            "secret_id_accessor": entry.accessor,
            "secret_id_num_uses": entry.uses_left,
            "secret_id_ttl": 0 if entry.expires is None else int(entry.expires - entry.created),
            "token_bound_cidrs": [],
        }

    def _login(self, req: Request, mount: Mount) -> Reply:
        core = self._core
        role_id = get_str(req.data, "role_id")
        if not role_id:
            raise VaultError(400, "missing role_id")
        role = next((r for r in self._roles.values() if r.role_id == role_id), None)
        if role is None:
            raise VaultError(400, "invalid role or secret ID")
        if role.bind_secret_id:
            secret_id = get_str(req.data, "secret_id")
            if not secret_id:
                raise VaultError(400, "missing secret_id")
            entry = self._secret_ids.get(secret_id)
            now = core.clock.now()
            if entry is None or entry.role != role.name or (
                    entry.expires is not None and now >= entry.expires):
                raise VaultError(400, "invalid role or secret ID")
            if entry.uses_left > 0:
                entry.uses_left -= 1
                if entry.uses_left == 0:
                    del self._secret_ids[secret_id]
        token = core.tokens.issue_login(role.token, mount, display_name="",
                                        meta={"role_name": role.name})
        return ok(req, None, auth=auth_block(token))
