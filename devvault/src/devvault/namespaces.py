"""Namespaces (Vault Enterprise / HCP): ``sys/namespaces`` and how a request finds its namespace.

A namespace is a Vault of its own inside the server: its own secrets mounts, auth mounts (a
``token/`` mount in each) and ACL policies. Tokens and leases carry the path of the namespace they
were created in (``""`` is root, otherwise ``ns1/`` or ``ns1/ns2/``, always with the trailing
slash, as ``namespace_path`` shows it). A request's namespace is the ``X-Vault-Namespace`` header
(``root`` or empty is the root namespace) followed by any leading path segments that name child
namespaces, so ``X-Vault-Namespace: ns1`` + ``/v1/ns2/secret/data/x`` and ``/v1/ns1/ns2/secret/
data/x`` address the same secret. A new namespace has only ``token/`` and ``sys/`` (no ``secret/``:
mount one with ``sys/mounts``), as in Vault.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from devvault.mounts import MountTable, route, unsupported_op
from devvault.params import get_map, random_text
from devvault.policy import PolicyStore
from devvault.wire import Reply, Request, VaultError, no_content, ok

if TYPE_CHECKING:
    from devvault.core import Core

__all__ = ["Namespace", "NamespaceStore", "NamespacesAPI", "normalize"]

#: Names Vault refuses for a namespace (they would shadow its own top-level paths).
_RESERVED = frozenset({"root", "sys", "audit", "auth", "cubbyhole", "identity"})
_NAME = re.compile(r"[A-Za-z0-9_.-]+")


def normalize(path: str) -> str:
    """Returns a namespace path as Vault shows it: ``""`` for root, else ``a/b/``."""
    path = path.strip().strip("/")
    return "" if path in ("", "root") else path + "/"


@dataclass(slots=True, kw_only=True)
class Namespace:
    """One namespace: its path (``""`` or ``a/b/``), id, metadata and its own tables."""

    path: str
    id: str
    custom_metadata: dict[str, str] = field(default_factory=dict)
    mounts: MountTable = field(init=False)
    auth: MountTable = field(init=False)
    policies: PolicyStore = field(default_factory=PolicyStore)

    def __post_init__(self) -> None:
        self.mounts = MountTable(self.path)
        self.auth = MountTable(self.path)

    def info(self) -> dict[str, Any]:
        return {"custom_metadata": self.custom_metadata, "id": self.id, "path": self.path}


class NamespaceStore:
    """Every namespace by path; ``setup`` fills a new namespace's tables (the token mount)."""

    def __init__(self, setup: Callable[[Namespace], None]) -> None:
        self._setup = setup
        self.root = Namespace(path="", id="root")
        self._by_path: dict[str, Namespace] = {"": self.root}
        setup(self.root)

    def get(self, path: str) -> Namespace | None:
        return self._by_path.get(normalize(path))

    def require(self, path: str) -> Namespace:
        found = self.get(path)
        if found is None:
            raise VaultError(404, f'namespace "{normalize(path)}" not found')
        return found

    def children(self, parent: Namespace) -> list[Namespace]:
        return [ns for path, ns in self._by_path.items() if path != parent.path and
                path.startswith(parent.path) and "/" not in path[len(parent.path):].rstrip("/")]

    def resolve(self, header: str, path: str) -> tuple[Namespace, str]:
        """The request's namespace (header, then leading path segments) and the rest of the path."""
        namespace = self.require(header)
        parts = path.split("/")
        while len(parts) > 1 and (child := self._by_path.get(
                f"{namespace.path}{parts[0]}/")) is not None:
            namespace, parts = child, parts[1:]
        return namespace, "/".join(parts)

    def create(self, parent: Namespace, name: str, metadata: dict[str, str]) -> Namespace:
        """Creates ``name`` (``a`` or ``a/b`` whose ``a`` exists) under ``parent``."""
        name = name.strip("/")
        *ancestors, leaf = name.split("/")
        for segment in (*ancestors, leaf):
            if segment in _RESERVED:
                raise VaultError(400, f'"{segment}" is a reserved path and cannot be used as '
                                      "a namespace name")
            if not _NAME.fullmatch(segment):
                raise VaultError(400, f'"{name}" is not a valid namespace path')
        base = self.require(parent.path + "/".join(ancestors)) if ancestors else parent
        path = f"{base.path}{leaf}/"
        existing = self._by_path.get(path)
        if existing is not None:
            return existing
        namespace = Namespace(path=path, id=random_text(5), custom_metadata=metadata)
        self._setup(namespace)
        self._by_path[path] = namespace
        return namespace

    def delete(self, namespace: Namespace) -> None:
        if self.children(namespace):
            raise VaultError(400, f'cannot delete namespace ("{namespace.path}") containing '
                                  "child namespaces")
        self._by_path.pop(namespace.path, None)


class NamespacesAPI:
    """``sys/namespaces`` (LIST) and ``sys/namespaces/{path}`` (POST, GET, PATCH, DELETE)."""

    def __init__(self, core: Core) -> None:
        self._core = core

    def handle(self, req: Request, rel: str) -> Reply:
        name, args = route(rel, [(r"namespaces", "list"), (r"namespaces/(?P<path>.+)", "one")])
        store = self._core.namespaces
        current = store.require(req.namespace)
        if name == "list":
            if req.op != "list":
                raise unsupported_op()
            children = store.children(current)
            if not children:
                raise VaultError(404)
            keys = sorted(ns.path[len(current.path):] for ns in children)
            return ok(req, {"key_info": {ns.path[len(current.path):]: ns.info()
                                         for ns in children}, "keys": keys})
        rel_path = args["path"].strip("/")
        target = store.get(current.path + rel_path)
        if req.op == "update":
            meta = get_map(req.data, "custom_metadata") or {}
            created = store.create(current, rel_path, {str(k): str(v) for k, v in meta.items()})
            return ok(req, created.info())
        if req.op == "patch" and target is not None:
            meta = get_map(req.data, "custom_metadata") or {}
            target.custom_metadata.update({str(k): str(v) for k, v in meta.items()})
            return ok(req, target.info())
        if req.op == "read":
            if target is None:
                raise VaultError(404)
            return ok(req, target.info())
        if req.op == "delete":
            if target is not None:
                self._core.delete_namespace(target)
            return no_content()
        raise unsupported_op()
