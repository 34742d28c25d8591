"""KV version 2 (vault-plugin-secrets-kv): data, metadata, delete/undelete/destroy, config.

Reference: vault-http-api.md §2. Soft-deleted versions still count for check-and-set; reading a
deleted or destroyed version answers 404 with a full raw envelope and no ``errors`` key (built
inside the plugin, so ``mount_type`` is ``""`` and there is no trailing newline).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from devvault.mounts import Mount, unsupported_op
from devvault.params import get_bool, get_duration, get_int, get_map, go_duration, rfc3339
from devvault.wire import Reply, Request, VaultError, encode, envelope, no_content, ok

if TYPE_CHECKING:
    from devvault.core import Core

__all__ = ["KVv2Backend"]

DEFAULT_MAX_VERSIONS = 10
_ROOT_WARNING = "Non-listing operations on the root of a K/V v2 mount are not supported."
_SUBCOMMANDS = {"update": "put", "patch": "patch", "read": "get", "head": "get", "list": "list",
                "delete": "delete"}


@dataclass(slots=True, kw_only=True)
class _Version:
    data: dict[str, Any] | None
    created: float
    deletion_time: float | None = None
    destroyed: bool = False


@dataclass(slots=True, kw_only=True)
class _Key:
    created: float
    updated: float
    versions: dict[int, _Version] = field(default_factory=dict)
    current_version: int = 0
    oldest_version: int = 0
    max_versions: int = 0
    cas_required: bool = False
    delete_version_after: int = 0
    custom_metadata: dict[str, str] | None = None


def _invalid_path(req: Request, warning: str) -> Reply:
    body = envelope(req, warnings=[warning], mount_type="")
    return Reply(status=404, body=encode(body, newline=False))


class KVv2Backend:
    """One KV v2 mount."""

    unauthenticated_paths: frozenset[str] = frozenset()

    def __init__(self, core: Core) -> None:
        self._core = core
        self._keys: dict[str, _Key] = {}
        self.max_versions = 0
        self.cas_required = False
        self.delete_version_after = 0

    def handle(self, req: Request, rel: str, mount: Mount) -> Reply:
        head, _, path = rel.partition("/")
        path = path.strip("/")
        if head == "config" and not path:
            return self._config(req)
        if head not in ("data", "metadata", "delete", "undelete", "destroy"):
            subcommand = _SUBCOMMANDS.get(req.op, "get")
            return _invalid_path(req, "Invalid path for a versioned K/V secrets engine. See the "
                                      "API docs for the appropriate API endpoints to use. If "
                                      f"using the Vault CLI, use 'vault kv {subcommand}' for "
                                      "this operation.")
        if not path and not (head == "metadata" and req.op == "list"):
            return _invalid_path(req, _ROOT_WARNING)
        if head == "data":
            handlers = {"read": self._read, "head": self._read, "update": self._write,
                        "delete": self._delete_latest, "patch": self._patch}
        elif head == "metadata":
            handlers = {"read": self._read_metadata, "update": self._write_metadata,
                        "delete": self._delete_metadata, "list": self._list}
        else:
            handlers = {"update": {"delete": self._delete_versions, "undelete": self._undelete,
                                   "destroy": self._destroy}[head]}
        handler = handlers.get(req.op)
        if handler is None:
            raise unsupported_op()
        return handler(req, path)

    # -- helpers ---------------------------------------------------------------------------------

    def _now(self) -> float:
        return self._core.clock.now()

    def _version_metadata(self, key: _Key, number: int) -> dict[str, Any]:
        version = key.versions[number]
        return {
            "created_time": rfc3339(version.created),
            "custom_metadata": key.custom_metadata,
            "deletion_time": rfc3339(version.deletion_time) if version.deletion_time else "",
            "destroyed": version.destroyed,
            "version": number,
        }

    def _is_deleted(self, version: _Version) -> bool:
        return version.deletion_time is not None and version.deletion_time <= self._now()

    @staticmethod
    def _versions(req: Request, message: str) -> list[int]:
        raw = req.data.get("versions")
        if isinstance(raw, str):
            raw = [part for part in raw.split(",") if part.strip()]
        if not raw or not isinstance(raw, list):
            raise VaultError(400, message)
        return [get_int({"versions": item}, "versions") for item in raw]

    # -- data ------------------------------------------------------------------------------------

    def _read(self, req: Request, path: str) -> Reply:
        number = get_int(req.data, "version")
        key = self._keys.get(path)
        if key is None or not key.versions:
            raise VaultError(404)
        number = number or key.current_version
        version = key.versions.get(number)
        if version is None:
            raise VaultError(404)
        metadata = self._version_metadata(key, number)
        if version.destroyed or self._is_deleted(version):
            body = envelope(req, data={"data": None, "metadata": metadata}, mount_type="")
            return Reply(status=404, body=encode(body, newline=False))
        return ok(req, {"data": version.data, "metadata": metadata})

    def _check_cas(self, req: Request, key: _Key | None) -> None:
        options = req.data.get("options")
        cas_raw = options.get("cas") if isinstance(options, dict) else None
        required = self.cas_required or (key is not None and key.cas_required)
        if cas_raw is None:
            if required:
                raise VaultError(400, "check-and-set parameter required for this call")
            return
        if isinstance(cas_raw, bool) or not isinstance(cas_raw, int):
            raise VaultError(400, "error parsing check-and-set parameter")
        if cas_raw != (key.current_version if key is not None else 0):
            raise VaultError(400, "check-and-set parameter did not match the current version")

    def _store(self, path: str, key: _Key | None, data: dict[str, Any]) -> _Key:
        now = self._now()
        if key is None:
            key = self._keys[path] = _Key(created=now, updated=now)
        key.current_version += 1
        after = key.delete_version_after or self.delete_version_after
        key.versions[key.current_version] = _Version(
            data=data, created=now, deletion_time=now + after if after else None)
        key.updated = now
        limit = key.max_versions or self.max_versions or DEFAULT_MAX_VERSIONS
        while len(key.versions) > limit:
            del key.versions[min(key.versions)]
            key.oldest_version = min(key.versions)
        return key

    def _write(self, req: Request, path: str) -> Reply:
        data = req.data.get("data")
        if "data" not in req.data or data is None:
            raise VaultError(400, "no data provided")
        if not isinstance(data, dict):
            raise VaultError(400, "data must be a JSON object")
        key = self._keys.get(path)
        self._check_cas(req, key)
        key = self._store(path, key, data)
        return ok(req, self._version_metadata(key, key.current_version))

    def _patch(self, req: Request, path: str) -> Reply:
        if req.content_type.split(";")[0].strip() != "application/merge-patch+json":
            raise VaultError(415, "PATCH requires Content-Type application/merge-patch+json")
        key = self._keys.get(path)
        current = key.versions.get(key.current_version) if key else None
        if key is None or current is None or current.destroyed or self._is_deleted(current):
            raise VaultError(404)
        self._check_cas(req, key)
        patch = req.data.get("data")
        if not isinstance(patch, dict):
            raise VaultError(400, "no data provided")
        merged = json.loads(json.dumps(current.data))
        for name, value in patch.items():
            if value is None:
                merged.pop(name, None)
            else:
                merged[name] = value
        key = self._store(path, key, merged)
        return ok(req, self._version_metadata(key, key.current_version))

    def _delete_latest(self, req: Request, path: str) -> Reply:
        key = self._keys.get(path)
        if key is not None and key.current_version in key.versions:
            version = key.versions[key.current_version]
            if not version.destroyed and not self._is_deleted(version):
                version.deletion_time = self._now()
        return no_content()

    def _delete_versions(self, req: Request, path: str) -> Reply:
        numbers = self._versions(req, "No version number provided")
        key = self._keys.get(path)
        for number in numbers:
            version = key.versions.get(number) if key else None
            if version is not None and not version.destroyed and not self._is_deleted(version):
                version.deletion_time = self._now()
        return no_content()

    def _undelete(self, req: Request, path: str) -> Reply:
        numbers = self._versions(req, "No version number provided")
        key = self._keys.get(path)
        for number in numbers:
            version = key.versions.get(number) if key else None
            if version is not None and not version.destroyed:
                version.deletion_time = None
        return no_content()

    def _destroy(self, req: Request, path: str) -> Reply:
        numbers = self._versions(req, "no version number provided")
        key = self._keys.get(path)
        for number in numbers:
            version = key.versions.get(number) if key else None
            if version is not None:
                version.destroyed, version.data = True, None
        return no_content()

    # -- metadata --------------------------------------------------------------------------------

    def _read_metadata(self, req: Request, path: str) -> Reply:
        key = self._keys.get(path)
        if key is None:
            raise VaultError(404)
        versions = {
            str(number): {
                "created_time": rfc3339(version.created),
                "deletion_time": rfc3339(version.deletion_time) if version.deletion_time else "",
                "destroyed": version.destroyed,
            }
            for number, version in key.versions.items()
        }
        return ok(req, {
            "cas_required": key.cas_required,
            "created_time": rfc3339(key.created),
            "current_version": key.current_version,
            "custom_metadata": key.custom_metadata,
            "delete_version_after": go_duration(key.delete_version_after),
            "max_versions": key.max_versions,
            "oldest_version": key.oldest_version,
            "updated_time": rfc3339(key.updated),
            "versions": versions,
        })

    def _write_metadata(self, req: Request, path: str) -> Reply:
        now = self._now()
        custom = get_map(req.data, "custom_metadata")
        if custom is not None and not all(isinstance(v, str) for v in custom.values()):
            raise VaultError(400, "custom_metadata values must be strings")
        key = self._keys.get(path)
        if key is None:
            key = self._keys[path] = _Key(created=now, updated=now)
        key.max_versions = get_int(req.data, "max_versions", key.max_versions)
        key.cas_required = get_bool(req.data, "cas_required", key.cas_required)
        key.delete_version_after = get_duration(req.data, "delete_version_after",
                                                key.delete_version_after)
        if custom is not None:
            key.custom_metadata = custom
        key.updated = now
        return no_content()

    def _delete_metadata(self, req: Request, path: str) -> Reply:
        self._keys.pop(path, None)
        return no_content()

    def _list(self, req: Request, path: str) -> Reply:
        prefix = f"{path}/" if path else ""
        exclude_deleted = get_bool(req.data, "exclude_deleted")
        keys: set[str] = set()
        for name, key in self._keys.items():
            if not name.startswith(prefix):
                continue
            if exclude_deleted:
                current = key.versions.get(key.current_version)
                if current is None or current.destroyed or self._is_deleted(current):
                    continue
            rest = name[len(prefix):]
            keys.add(rest.split("/")[0] + "/" if "/" in rest else rest)
        if not keys:
            raise VaultError(404)
        return ok(req, {"keys": sorted(keys)})

    # -- mount config ----------------------------------------------------------------------------

    def _config(self, req: Request) -> Reply:
        if req.op == "read":
            return ok(req, {"cas_required": self.cas_required,
                            "delete_version_after": go_duration(self.delete_version_after),
                            "max_versions": self.max_versions})
        if req.op != "update":
            raise unsupported_op()
        self.max_versions = get_int(req.data, "max_versions", self.max_versions)
        self.cas_required = get_bool(req.data, "cas_required", self.cas_required)
        self.delete_version_after = get_duration(req.data, "delete_version_after",
                                                 self.delete_version_after)
        return no_content()
