"""The server's state and request pipeline: seal check → route → token → ACL → backend.

Everything here runs under one lock (``Core.lock``); the HTTP layer adds latency and injected
failures outside it, so concurrent requests overlap their delays. Expired tokens and leases are
swept at the start of each request, against the server clock.

Namespaces (``namespaces``): the request's namespace comes from ``X-Vault-Namespace`` and any
leading path segments naming child namespaces; each has its own secrets mounts, auth mounts and
policies. A token works in the namespace it was created in and in that namespace's children, and
its policies match paths relative to its own namespace (a policy of ``ns1`` granting
``ns2/secret/*`` covers ``ns1/ns2/secret/*``), as in Vault Enterprise.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from devvault.approle import AppRoleBackend
from devvault.aws_auth import AWSBackend
from devvault.cert_auth import CertBackend
from devvault.database import DatabaseBackend, DatabaseRole
from devvault.jwt_auth import JWTBackend
from devvault.kubernetes import KubernetesBackend
from devvault.kv1 import KVv1Backend
from devvault.kv2 import KVv2Backend
from devvault.leases import LeaseManager
from devvault.mounts import Backend, Clock, Mount, MountTable
from devvault.namespaces import Namespace, NamespaceStore
from devvault.pki import PKIBackend, Role
from devvault.policy import ACL, PolicyStore
from devvault.system import SystemBackend
from devvault.token_auth import TokenBackend
from devvault.tokens import Token, TokenStore
from devvault.wire import PERMISSION_DENIED, Reply, Request, VaultError, new_uuid
from devvault.wrapping import Wrapper, is_wrapping, wrapping_allows

__all__ = ["DEV_CA_TTL", "Core"]

#: The dev PKI mount is tuned to 10 years (as in the PKI tutorial) so its root CA lasts that long.
DEV_CA_TTL = 87600 * 3600
_RESERVED = ("sys/", "auth/", "cubbyhole/", "identity/")


@dataclass(frozen=True, slots=True)
class _Target:
    mount: Mount
    rel: str


class Core:
    """Mount tables, tokens, policies, leases and the seal, behind one lock."""

    def __init__(self, *, root_token: str, kv_v1_mount: str | None = None) -> None:
        self.lock = threading.RLock()
        self.clock = Clock()
        self.sealed = False
        self.cluster_id = new_uuid()
        self.cluster_name = "vault-cluster-" + self.cluster_id[:8]
        self.leases = LeaseManager(self.clock)
        self.tokens = TokenStore(self.clock, self._token_revoked)
        self.tokens.add_root(root_token)
        self.wrapper = Wrapper(self)
        #: Called with a CA PEM whenever a ``cert`` auth role trusts it (the TLS listener adds it
        #: to the CAs it accepts client certificates from).
        self.on_client_ca: Callable[[str], None] | None = None
        self.sys_mount = Mount(path="sys/", type="system", backend=SystemBackend(self),
                               description="system endpoints used for control, policy and "
                                           "debugging")
        self.namespaces = NamespaceStore(self._setup_namespace)
        root = self.namespaces.root.mounts
        root.add(Mount(path="secret/", type="kv", backend=KVv2Backend(self),
                       options={"version": "2"}, description="key/value secret storage"))
        self._add_dev_mounts(root)
        if kv_v1_mount:
            self.mount("", kv_v1_mount, "kv", options={"version": "1"})

    # -- namespaces and mounts -------------------------------------------------------------------

    def _setup_namespace(self, namespace: Namespace) -> None:
        namespace.auth.add(Mount(path="token/", type="token", backend=TokenBackend(self),
                                 description="token based credentials"))

    def delete_namespace(self, namespace: Namespace) -> None:
        """Deletes an empty-of-children namespace, revoking its tokens and leases."""
        self.namespaces.delete(namespace)
        self.tokens.revoke_namespace(namespace.path)
        self.leases.revoke_namespace(namespace.path)

    def mounts(self, namespace: str) -> MountTable:
        """The secrets mount table of ``namespace`` ("" is root)."""
        return self.namespaces.require(namespace).mounts

    def auth_mounts(self, namespace: str) -> MountTable:
        return self.namespaces.require(namespace).auth

    def policy_store(self, namespace: str) -> PolicyStore:
        return self.namespaces.require(namespace).policies

    def acl(self, token: Token) -> ACL:
        """The token's ACL: its policies, read in the token's own namespace."""
        return self.policy_store(token.namespace).acl(token.policies)

    @staticmethod
    def acl_path(token: Token, namespace: str, path: str) -> str:
        """``path`` of ``namespace`` as the token's policies see it (relative to its namespace)."""
        return namespace[len(token.namespace):] + path

    def namespace_id(self, namespace: str) -> str:
        return self.namespaces.require(namespace).id

    def _add_dev_mounts(self, table: MountTable) -> None:
        pki = PKIBackend(self)
        table.add(Mount(path="pki/", type="pki", backend=pki, max_lease_ttl=DEV_CA_TTL,
                        description="dev PKI: root CA and role dev"))
        pki.generate_root("injector devserver root CA", DEV_CA_TTL)
        dev_role = Role(allow_any_name=True, key_type="ec", ttl=24 * 3600, max_ttl=720 * 3600)
        pki.roles["dev"] = dev_role
        database = DatabaseBackend(self)
        table.add(Mount(path="database/", type="database", backend=database,
                        description="dev database engine: role dev"))
        database.configs["dev"] = {"plugin_name": "devserver-inmem", "allowed_roles": "*"}
        database.roles["dev"] = DatabaseRole(db_name="dev", default_ttl=3600, max_ttl=24 * 3600)

    def mount(self, namespace: str, path: str, engine: str, *, options: dict[str, str] | None,
              description: str = "", default_lease_ttl: int = 0, max_lease_ttl: int = 0) -> Mount:
        """Enables a secrets engine (``kv``, ``kv-v2``, ``database``, ``pki``) at ``path``."""
        path = _mount_path(path)
        if not engine:
            raise VaultError(400, "backend type must be specified")
        options = dict(options) if options else None
        if engine == "kv-v2":
            engine, options = "kv", {**(options or {}), "version": "2"}
        backend: Backend
        if engine == "kv":
            version = (options or {}).get("version", "1")
            if version not in ("1", "2"):
                raise VaultError(400, f"invalid KV version {version!r}")
            backend = KVv2Backend(self) if version == "2" else KVv1Backend(self)
        elif engine == "database":
            backend = DatabaseBackend(self)
        elif engine == "pki":
            backend = PKIBackend(self)
        else:
            raise VaultError(400, f"plugin not found in the catalog: {engine}")
        mount = Mount(path=path, type=engine, backend=backend, options=options,
                      description=description, default_lease_ttl=default_lease_ttl,
                      max_lease_ttl=max_lease_ttl)
        self.mounts(namespace).add(mount)
        return mount

    def unmount(self, namespace: str, path: str) -> None:
        mount = self.mounts(namespace).remove(_mount_path(path))
        if mount is not None:
            self.leases.revoke_prefix(mount.path, namespace)

    def enable_auth(self, namespace: str, path: str, method: str, description: str = "") -> None:
        backends: dict[str, Callable[[Core], Backend]] = {
            "approle": AppRoleBackend, "kubernetes": KubernetesBackend, "jwt": JWTBackend,
            "cert": CertBackend, "aws": AWSBackend}
        if not method:
            raise VaultError(400, "backend type must be specified")
        if method == "token":
            raise VaultError(400, "token credential backend cannot be instantiated")
        factory = backends.get(method)
        if factory is None:
            raise VaultError(400, f"plugin not found in the catalog: {method}")
        self.auth_mounts(namespace).add(Mount(path=path.strip("/") + "/", type=method,
                                              backend=factory(self), description=description))

    def disable_auth(self, namespace: str, path: str) -> None:
        path = path.strip("/") + "/"
        if path == "token/":
            raise VaultError(400, "token credential backend cannot be disabled")
        if self.auth_mounts(namespace).remove(path) is not None:
            self.tokens.revoke_path_prefix(f"auth/{path}", namespace)

    # -- tokens and leases -----------------------------------------------------------------------

    def _token_revoked(self, token: Token) -> None:
        self.leases.revoke_token(token.accessor)
        self.wrapper.forget(token.id)

    def sweep(self) -> None:
        """Revokes what expired (tokens first: their leases go with them)."""
        now = self.clock.now()
        self.tokens.expire(now)
        self.leases.expire(now)

    # -- the request pipeline --------------------------------------------------------------------

    def handle(self, req: Request) -> Reply:
        with self.lock:
            self.sweep()
            try:
                return self._handle(req)
            except VaultError as exc:
                return exc.reply()

    def _route(self, namespace: Namespace, path: str) -> _Target | None:
        if path == "sys" or path.startswith("sys/"):
            return _Target(self.sys_mount, path[4:])
        found = (namespace.auth.find(path[5:]) if path.startswith("auth/")
                 else namespace.mounts.find(path))
        return None if found is None else _Target(*found)

    def _handle(self, req: Request) -> Reply:
        namespace, path = self.namespaces.resolve(req.namespace, req.path)
        req.namespace, req.path = namespace.path, path
        target = self._route(namespace, path)
        unauthenticated = target is not None and (
            target.rel in target.mount.backend.unauthenticated_paths)
        if self.sealed and not (target is not None and target.mount is self.sys_mount
                                and unauthenticated):
            raise VaultError(503, "Vault is sealed")
        token = self.tokens.lookup(req.token) if req.token else None
        req.token_entry = token
        if not unauthenticated:
            if token is None:
                raise VaultError(403, "permission denied")
            if not namespace.path.startswith(token.namespace):
                raise VaultError(403, PERMISSION_DENIED)
            acl_path = self.acl_path(token, namespace.path, path + "/" if req.op == "list"
                                     else path)
            preflight = path.startswith(("sys/internal/ui/mounts/", "sys/mounts-all/"))
            if is_wrapping(token):
                if not wrapping_allows(path):
                    raise VaultError(403, PERMISSION_DENIED)
            elif not preflight and not self.acl(token).allows(acl_path, req.op, req.data):
                raise VaultError(403, PERMISSION_DENIED)
        if target is None:
            raise VaultError(404, f'no handler for route "{path}". route entry not found.')
        req.mount_type = target.mount.type
        try:
            reply = target.mount.backend.handle(req, target.rel, target.mount)
        finally:
            if token is not None and not unauthenticated:
                self.tokens.consume(token)
        if req.wrap_ttl and reply.status == 200 and reply.payload is not None:
            return self.wrapper.wrap(req, reply.payload)
        return reply


def _mount_path(path: str) -> str:
    path = path.strip("/") + "/"
    if path == "/":
        raise VaultError(400, "path cannot be empty")
    for reserved in _RESERVED:
        if path.startswith(reserved):
            raise VaultError(400, f'cannot mount under "{reserved}"')
    return path

