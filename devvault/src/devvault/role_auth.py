"""What the JWT and Kubernetes auth methods share: a config, named roles, and one dispatch.

A backend names its routes ``login``, ``config``, ``roles`` (LIST) and ``role`` (by name) and
implements ``_login``, ``_configure`` and ``_write_role``; the routing, the role listing and a
role's read and delete live here once.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from devvault.mounts import Mount, route, unsupported_op
from devvault.wire import Reply, Request, VaultError, no_content, ok

if TYPE_CHECKING:
    from devvault.core import Core

__all__ = ["RoleAuthBackend"]



class _Role(Protocol):
    def data(self) -> dict[str, Any]: ...


C = TypeVar("C")
R = TypeVar("R", bound=_Role)


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

    def _role(self, req: Request, name: str) -> Reply:
        old = self._roles.get(name)
        if req.op == "read":
            if old is None:
                raise VaultError(404)
            return ok(req, old.data())
        if req.op == "delete":
            self._roles.pop(name, None)
            return no_content()
        if req.op != "update":
            raise unsupported_op()
        self._roles[name] = self._write_role(req, name, old)
        return no_content()

    @abstractmethod
    def _login(self, req: Request, mount: Mount) -> Reply: ...

    @abstractmethod
    def _configure(self, req: Request) -> Reply: ...

    @abstractmethod
    def _write_role(self, req: Request, name: str, old: R | None) -> R:
        """The role ``name`` as ``req`` writes it over ``old``; VaultError(400) when invalid."""
