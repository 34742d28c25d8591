"""What the JWT and Kubernetes auth methods share: a config, named roles, and one dispatch.

A backend names its routes ``login``, ``config``, ``roles`` (LIST) and ``role`` (by name) and
implements the three handlers; the routing and the role listing live here once.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Generic, TypeVar

from devvault.mounts import Mount, route, unsupported_op
from devvault.wire import Reply, Request, VaultError, ok

if TYPE_CHECKING:
    from devvault.core import Core

__all__ = ["RoleAuthBackend"]

C = TypeVar("C")
R = TypeVar("R")


class RoleAuthBackend(ABC, Generic[C, R]):
    """One auth mount with a config of type ``C`` and roles of type ``R``."""

    unauthenticated_paths = frozenset({"login"})
    #: (pattern, name) pairs for ``mounts.route``.
    routes: list[tuple[str, str]] = []  # noqa: RUF012 - set once per subclass, never mutated

    def __init__(self, core: Core) -> None:
        self._core = core
        self._config: C | None = None
        self._roles: dict[str, R] = {}

    def handle(self, req: Request, rel: str, mount: Mount) -> Reply:
        name, args = route(rel, self.routes)
        if name == "login" and req.op == "update":
            return self._login(req, mount)
        if name == "config":
            return self._configure(req)
        if name == "roles" and req.op == "list":
            if not self._roles:
                raise VaultError(404)
            return ok(req, {"keys": sorted(self._roles)})
        if name == "role":
            return self._role(req, args["name"].lower())
        raise unsupported_op()

    @abstractmethod
    def _login(self, req: Request, mount: Mount) -> Reply: ...

    @abstractmethod
    def _configure(self, req: Request) -> Reply: ...

    @abstractmethod
    def _role(self, req: Request, name: str) -> Reply: ...
