"""KV version 1 (the passthrough backend): flat secrets with an advisory ``lease_duration``.

Reference: vault-http-api.md §3. A read reports ``lease_duration`` = the ``ttl`` (or legacy
``lease``) key of the secret when it parses as a duration, else the mount's default lease TTL
(768h untuned); no lease is created, so ``lease_id`` is ``""`` and ``renewable`` false.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from devvault.mounts import Mount, unsupported_op
from devvault.params import parse_duration
from devvault.wire import Reply, Request, VaultError, no_content, ok

if TYPE_CHECKING:
    from devvault.core import Core

__all__ = ["KVv1Backend"]


class KVv1Backend:
    """One KV v1 mount."""

    unauthenticated_paths: frozenset[str] = frozenset()

    def __init__(self, core: Core) -> None:
        self._core = core
        self._data: dict[str, dict[str, Any]] = {}

    def handle(self, req: Request, rel: str, mount: Mount) -> Reply:
        path = rel.strip("/")
        if req.op == "list":
            return self._list(req, path)
        if not path:
            raise unsupported_op()
        if req.op in ("read", "head"):
            return self._read(req, path, mount)
        if req.op == "update":
            if not req.data:
                raise VaultError(400, "missing data fields")
            self._data[path] = dict(req.data)
            return no_content()
        if req.op == "delete":
            self._data.pop(path, None)
            return no_content()
        raise unsupported_op()

    def _read(self, req: Request, path: str, mount: Mount) -> Reply:
        data = self._data.get(path)
        if data is None:
            raise VaultError(404)
        lease = mount.default_ttl
        name = "ttl" if "ttl" in data else "lease"
        if name in data:
            # An unparseable ttl is only advisory: Vault falls back to the default.
            with contextlib.suppress(VaultError):
                lease = parse_duration(data[name], name)
        return ok(req, data, lease_duration=lease)

    def _list(self, req: Request, path: str) -> Reply:
        prefix = f"{path}/" if path else ""
        keys = {
            rest.split("/")[0] + "/" if "/" in rest else rest
            for name in self._data if name.startswith(prefix) and (rest := name[len(prefix):])
        }
        if not keys:
            raise VaultError(404)
        return ok(req, {"keys": sorted(keys)})
