"""The ``sys/`` backend: health, seal, init, mounts, auth methods, policies, KV version detection.

``sys/mounts``, ``sys/auth``, ``sys/policy`` and ``sys/capabilities-self`` copy their ``data``
keys to the top level of the body as Vault's ``HTTPSysInjector`` does. ``sys/unseal`` accepts
any non-empty key (a 1-of-1 shamir seal whose key is not checked). ``sys/wrapping/*`` is in
``wrapping``, ``sys/namespaces`` in ``namespaces``, ``sys/leases`` in ``leases``. Everything here
acts in the request's namespace.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from devvault.leases import LeasesAPI
from devvault.mounts import Mount, route, unsupported_op
from devvault.namespaces import NamespacesAPI
from devvault.params import get_bool, get_duration, get_list, get_map, get_str
from devvault.wire import Reply, Request, Struct, VaultError, no_content, ok, raw

if TYPE_CHECKING:
    from devvault.core import Core

__all__ = ["VERSION", "SystemBackend"]

VERSION = "1.16.0"
_HEALTH_CODES = {"activecode": 200, "standbycode": 429, "drsecondarycode": 472,
                 "performancestandbycode": 473, "sealedcode": 503, "uninitcode": 501}
_ROUTES = [
    (r"health", "health"),
    (r"seal-status", "seal-status"),
    (r"seal", "seal"),
    (r"unseal", "unseal"),
    (r"init", "init"),
    (r"leader", "leader"),
    (r"mounts", "mounts"),
    (r"mounts/(?P<path>.+)/tune", "mount-tune"),
    (r"mounts/(?P<path>.+)", "mount"),
    (r"auth", "auths"),
    (r"auth/(?P<path>.+)", "auth"),
    (r"policy", "policies"),
    (r"policy/(?P<name>.+)", "policy"),
    (r"policies/acl", "acl-policies"),
    (r"policies/acl/(?P<name>.+)", "acl-policy"),
    (r"(?:internal/ui/mounts|mounts-all)/(?P<path>.+)", "preflight"),
    (r"capabilities-self", "capabilities-self"),
    (r"(?:leases/.+|renew(?:/.+)?|revoke(?:/.+)?|revoke-(?:prefix|force)/.+)", "leases"),
    (r"wrapping/(?P<op>wrap|unwrap|lookup|rewrap)", "wrapping"),
    (r"namespaces(?:/.+)?", "namespaces"),
]


class SystemBackend:
    """The ``sys/`` mount."""

    unauthenticated_paths = frozenset({"health", "seal-status", "init", "unseal", "leader",
                                       "wrapping/lookup"})

    def __init__(self, core: Core) -> None:
        self._core = core
        self._leases = LeasesAPI(core.leases)
        self._namespaces = NamespacesAPI(core)

    def handle(self, req: Request, rel: str, mount: Mount) -> Reply:
        name, args = route(rel, _ROUTES)
        op = req.op
        if name == "leases":
            return self._leases.handle(req, rel)
        if name == "wrapping":
            return self._core.wrapper.handle(req, args["op"])
        if name == "namespaces":
            return self._namespaces.handle(req, rel)
        if name in ("health", "seal-status", "init", "leader", "seal", "unseal"):
            return self._status(req, name)
        if name in ("mounts", "mount", "mount-tune"):
            return self._mounts(req, name, args.get("path", ""))
        if name in ("auths", "auth"):
            return self._auth(req, args.get("path", ""))
        if name in ("policies", "policy", "acl-policies", "acl-policy"):
            return self._policy(req, name, args.get("name", ""))
        if name == "preflight" and op == "read":
            return self._preflight(req, args["path"])
        if name == "capabilities-self" and op == "update":
            return self._capabilities(req)
        raise unsupported_op()

    # -- health, seal, init ----------------------------------------------------------------------

    def _seal_status(self) -> Struct:
        core = self._core
        status = Struct(type="shamir", initialized=True, sealed=core.sealed, t=1, n=1,
                        progress=0, nonce="", version=VERSION, build_date="2024-01-01T00:00:00Z",
                        migration=False)
        if not core.sealed:
            status.update(cluster_name=core.cluster_name, cluster_id=core.cluster_id)
        status.update(recovery_seal=False, storage_type="inmem")
        return status

    def _status(self, req: Request, name: str) -> Reply:
        core, op = self._core, req.op
        if name == "health" and op in ("read", "head"):
            return self._health(req)
        if name == "seal-status" and op == "read":
            return raw(self._seal_status())
        if name == "init":
            if op == "update":
                raise VaultError(400, "Vault is already initialized")
            if op == "read":
                return raw({"initialized": True})
        if name == "leader" and op == "read":
            return raw(Struct(ha_enabled=False, is_self=False,
                              active_time="0001-01-01T00:00:00Z", leader_address="",
                              leader_cluster_address="", performance_standby=False,
                              performance_standby_last_remote_wal=0))
        if name == "seal" and op == "update":
            core.sealed = True
            return no_content()
        if name == "unseal" and op == "update":
            if not get_bool(req.data, "reset") and not get_str(req.data, "key"):
                raise VaultError(400, "'key' must be specified in request body as JSON, or "
                                      "'reset' set to true")
            if get_str(req.data, "key"):
                core.sealed = False
            return raw(self._seal_status())
        raise unsupported_op()

    def _health(self, req: Request) -> Reply:
        core = self._core
        codes = dict(_HEALTH_CODES)
        for key in codes:
            value = req.data.get(key)
            if value is not None:
                try:
                    codes[key] = int(value)
                except ValueError as exc:
                    raise VaultError(400, f"unable to parse {key}: {value!r}") from exc
        status = codes["sealedcode"] if core.sealed else codes["activecode"]
        if req.op == "head":
            return Reply(status=status)
        body: dict[str, Any] = {
            "clock_skew_ms": 0, "echo_duration_ms": 0, "enterprise": False,
            "initialized": True, "performance_standby": False,
            "replication_dr_mode": "disabled", "replication_performance_mode": "disabled",
            "sealed": core.sealed, "server_time_utc": int(core.clock.now()), "standby": False,
            "version": VERSION,
        }
        if not core.sealed:
            body.update(cluster_id=core.cluster_id, cluster_name=core.cluster_name)
        return raw(body, status=status)

    # -- mounts and auth methods -----------------------------------------------------------------

    def _mounts(self, req: Request, name: str, path: str) -> Reply:
        core, op = self._core, req.op
        table = core.mounts(req.namespace)
        if name == "mounts":
            if op != "read":
                raise unsupported_op()
            mounts = {**table.mounts, core.sys_mount.path: core.sys_mount}
            return ok(req, {p: m.info() for p, m in mounts.items()}, inject=True)
        key = path.strip("/") + "/"
        if name == "mount" and op == "update":
            options = get_map(req.data, "options")
            config = get_map(req.data, "config") or {}
            core.mount(req.namespace, path, get_str(req.data, "type"),
                       options={str(k): str(v) for k, v in options.items()} if options else None,
                       description=get_str(req.data, "description"),
                       default_lease_ttl=get_duration(config, "default_lease_ttl"),
                       max_lease_ttl=get_duration(config, "max_lease_ttl"))
            return no_content()
        if name == "mount" and op == "delete":
            core.unmount(req.namespace, path)
            return no_content()
        mount = table.mounts.get(key)
        if mount is None:
            raise VaultError(400, f"No secret engine mount at {key}")
        if name == "mount" and op == "read":
            return ok(req, mount.info(), inject=True)
        if op == "read":
            return ok(req, {"default_lease_ttl": mount.default_ttl,
                            "description": mount.description, "force_no_cache": False,
                            "max_lease_ttl": mount.max_ttl, "options": mount.options},
                      inject=True)
        if op == "update":
            mount.default_lease_ttl = get_duration(req.data, "default_lease_ttl",
                                                   mount.default_lease_ttl)
            mount.max_lease_ttl = get_duration(req.data, "max_lease_ttl", mount.max_lease_ttl)
            mount.description = get_str(req.data, "description", mount.description)
            return no_content()
        raise unsupported_op()

    def _auth(self, req: Request, path: str) -> Reply:
        core, op = self._core, req.op
        if not path:
            if op != "read":
                raise unsupported_op()
            table = core.auth_mounts(req.namespace).mounts
            return ok(req, {p: m.info() for p, m in table.items()}, inject=True)
        if op == "update":
            core.enable_auth(req.namespace, path, get_str(req.data, "type"),
                             get_str(req.data, "description"))
            return no_content()
        if op == "delete":
            core.disable_auth(req.namespace, path)
            return no_content()
        if op == "read":
            mount = core.auth_mounts(req.namespace).mounts.get(path.strip("/") + "/")
            if mount is None:
                raise VaultError(400, f"No auth engine at {path.strip('/')}/")
            return ok(req, mount.info(), inject=True)
        raise unsupported_op()

    # -- policies --------------------------------------------------------------------------------

    def _policy(self, req: Request, name: str, policy_name: str) -> Reply:
        store, op = self._core.policy_store(req.namespace), req.op
        legacy = name in ("policies", "policy")
        if name in ("policies", "acl-policies"):
            if not (op == "list" or (legacy and op == "read")):
                raise unsupported_op()
            names = store.names()
            data: dict[str, Any] = {"keys": names, "policies": names} if legacy else {
                "keys": names}
            return ok(req, data, inject=legacy)
        if op == "read":
            policy = store.get(policy_name)
            if policy is None:
                raise VaultError(404)
            body_key = "rules" if legacy else "policy"
            return ok(req, {"name": policy.name, body_key: policy.text}, inject=legacy)
        if op == "update":
            store.put(policy_name, get_str(req.data, "policy") or get_str(req.data, "rules"))
            return no_content()
        if op == "delete":
            store.delete(policy_name)
            return no_content()
        raise unsupported_op()

    def _preflight(self, req: Request, path: str) -> Reply:
        """KV version detection: the mount containing ``path``, if the token can use it."""
        core, token = self._core, req.token_entry
        clean = path.strip("/") + "/"
        if clean.startswith("auth/"):
            found = core.auth_mounts(req.namespace).find(clean[5:])
            prefix = "auth/"
        else:
            found = core.mounts(req.namespace).find(clean)
            prefix = ""
        denied = VaultError(403, "preflight capability check returned 403, please ensure "
                                 f'client\'s policies grant access to path "{clean}"')
        if found is None or token is None:
            raise denied
        mount = found[0]
        if not core.acl(token).touches(core.acl_path(token, req.namespace, prefix + mount.path)):
            raise denied
        data = mount.info(with_path=True)
        data["path"] = prefix + mount.path
        return ok(req, data)

    def _capabilities(self, req: Request) -> Reply:
        token = req.token_entry
        if token is None:
            raise VaultError(403, "permission denied")
        paths = get_list(req.data, "paths") or get_list(req.data, "path")
        if not paths:
            raise VaultError(400, "paths must be supplied")
        acl = self._core.acl(token)
        data: dict[str, Any] = {path: sorted(acl.capabilities(
            self._core.acl_path(token, req.namespace, path))) for path in paths}
        if len(paths) == 1:
            data["capabilities"] = data[paths[0]]
        return ok(req, data, inject=True)
