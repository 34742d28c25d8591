"""The server clock, the backend protocol and the mount tables (secrets engines, auth methods)."""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from devvault.params import DEFAULT_LEASE_TTL, MAX_LEASE_TTL, random_text
from devvault.wire import Reply, Request, VaultError, multierror, new_uuid

__all__ = ["Backend", "Clock", "Mount", "MountTable", "route", "unsupported_op", "unsupported_path"]


class Clock:
    """Wall-clock time plus an offset that tests move forward (``DevVault.advance_clock``)."""

    def __init__(self) -> None:
        self._offset = 0.0
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return time.time() + self._offset

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        with self._lock:
            self._offset += seconds


class Backend(Protocol):
    """A secrets engine or auth method mounted at a path.

    ``handle`` gets the path relative to the mount (no slashes at either end) and returns a reply
    or raises :class:`VaultError`. ``unauthenticated_paths`` are served without a token.
    """

    unauthenticated_paths: frozenset[str]

    def handle(self, req: Request, rel: str, mount: Mount) -> Reply: ...


@dataclass(slots=True, kw_only=True)
class Mount:
    """One entry of ``sys/mounts`` or ``sys/auth``; ``path`` ends with ``/``."""

    path: str
    type: str
    backend: Backend
    description: str = ""
    options: dict[str, str] | None = None
    default_lease_ttl: int = 0
    max_lease_ttl: int = 0
    uuid: str = field(default_factory=new_uuid)
    accessor: str = ""
    #: The path of the namespace whose table holds the mount (set by ``MountTable.add``).
    namespace: str = ""

    def __post_init__(self) -> None:
        if not self.accessor:
            self.accessor = f"{self.type.replace('-', '_')}_{random_text(8, '0123456789abcdef')}"

    @property
    def default_ttl(self) -> int:
        """The lease TTL a backend uses when nothing else sets one (768h unless tuned)."""
        return min(self.default_lease_ttl or DEFAULT_LEASE_TTL, self.max_ttl)

    @property
    def max_ttl(self) -> int:
        return self.max_lease_ttl or MAX_LEASE_TTL

    def info(self, *, with_path: bool = False) -> dict[str, Any]:
        """The mount as ``sys/mounts`` and ``sys/internal/ui/mounts`` describe it."""
        out: dict[str, Any] = {
            "accessor": self.accessor,
            "config": {
                "default_lease_ttl": self.default_lease_ttl,
                "force_no_cache": False,
                "max_lease_ttl": self.max_lease_ttl,
            },
            "description": self.description,
            "external_entropy_access": False,
            "local": False,
            "options": self.options,
            "plugin_version": "",
            "running_plugin_version": f"v0.0.0+builtin.{self.type}",
            "running_sha256": "",
            "seal_wrap": False,
            "type": self.type,
            "uuid": self.uuid,
        }
        if with_path:
            out["path"] = self.path
        return out


class MountTable:
    """Mounts by path; a request path resolves to the longest mount path that prefixes it."""

    def __init__(self, namespace: str = "") -> None:
        self.namespace = namespace
        self.mounts: dict[str, Mount] = {}

    def find(self, path: str) -> tuple[Mount, str] | None:
        """Returns the mount containing ``path`` and the path relative to it."""
        probe = path.strip("/") + "/"
        best = max((m for m in self.mounts if probe.startswith(m)), key=len, default=None)
        if best is None:
            return None
        return self.mounts[best], probe[len(best):].strip("/")

    def add(self, mount: Mount) -> None:
        for existing in self.mounts:
            if mount.path.startswith(existing) or existing.startswith(mount.path):
                raise VaultError(400, f"path is already in use at {existing}")
        mount.namespace = self.namespace
        self.mounts[mount.path] = mount

    def remove(self, path: str) -> Mount | None:
        return self.mounts.pop(path, None)


def unsupported_path() -> VaultError:
    return VaultError(404, multierror("unsupported path"))


def unsupported_op() -> VaultError:
    return VaultError(405, multierror("unsupported operation"))


def route(rel: str, patterns: list[tuple[str, str]]) -> tuple[str, dict[str, str]]:
    """Matches ``rel`` against ``(regex, name)`` pairs; returns the name and the named groups.

    Raises the 404 ``unsupported path`` error when nothing matches.
    """
    for pattern, name in patterns:
        match = re.fullmatch(pattern, rel)
        if match:
            return name, {k: v for k, v in match.groupdict().items() if v is not None}
    raise unsupported_path()
