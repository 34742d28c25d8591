"""Token roles (``auth/token/roles/{name}``) and what they impose on ``auth/token/create/{role}``.

As in Vault's token store: a role with ``allowed_policies`` lets its tokens carry any subset of
them (without the usual "subset of the parent's policies" rule) and gives them all when none are
asked for; ``disallowed_policies`` are refused; ``orphan`` makes orphans without sudo;
``renewable: false`` makes tokens that cannot be renewed; ``token_period`` and
``token_explicit_max_ttl`` apply to every token; the token's path is
``auth/token/create/{role}[/{path_suffix}]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from devvault.params import get_bool, get_duration, get_int, get_list, get_str
from devvault.wire import VaultError

__all__ = ["TokenRole"]


def _go_list(values: list[str]) -> str:
    return "[" + " ".join(f'"{value}"' for value in values) + "]"


@dataclass(slots=True, kw_only=True)
class TokenRole:
    name: str
    allowed_policies: list[str] = field(default_factory=list)
    disallowed_policies: list[str] = field(default_factory=list)
    orphan: bool = False
    renewable: bool = True
    path_suffix: str = ""
    period: int = 0
    explicit_max_ttl: int = 0
    no_default_policy: bool = False
    num_uses: int = 0
    token_type: str = "default-service"

    def update(self, data: dict[str, Any]) -> None:
        self.allowed_policies = sorted({p.lower() for p in get_list(
            data, "allowed_policies", self.allowed_policies)})
        self.disallowed_policies = sorted({p.lower() for p in get_list(
            data, "disallowed_policies", self.disallowed_policies)})
        self.orphan = get_bool(data, "orphan", self.orphan)
        self.renewable = get_bool(data, "renewable", self.renewable)
        self.path_suffix = get_str(data, "path_suffix", self.path_suffix)
        period_key = "token_period" if data.get("token_period") is not None else "period"
        self.period = get_duration(data, period_key, self.period)
        max_key = ("token_explicit_max_ttl" if data.get("token_explicit_max_ttl") is not None
                   else "explicit_max_ttl")
        self.explicit_max_ttl = get_duration(data, max_key, self.explicit_max_ttl)
        self.no_default_policy = get_bool(data, "token_no_default_policy",
                                          self.no_default_policy)
        self.num_uses = get_int(data, "token_num_uses", self.num_uses)
        self.token_type = get_str(data, "token_type", self.token_type) or "default-service"
        if self.token_type not in ("default-service", "service", "default"):
            raise VaultError(400, f"dev server: token_type {self.token_type!r} is not "
                                  "supported (only service tokens)")
        if "/" in self.path_suffix or ".." in self.path_suffix:
            raise VaultError(400, "path_suffix cannot contain '..' or '/'")

    def data(self) -> dict[str, Any]:
        """The role as ``GET auth/token/roles/{name}`` shows it."""
        return {
            "allowed_entity_aliases": [],
            "allowed_policies": self.allowed_policies,
            "allowed_policies_glob": [],
            "disallowed_policies": self.disallowed_policies,
            "disallowed_policies_glob": [],
            "explicit_max_ttl": self.explicit_max_ttl,
            "name": self.name,
            "orphan": self.orphan,
            "path_suffix": self.path_suffix,
            "period": self.period,
            "renewable": self.renewable,
            "token_bound_cidrs": [],
            "token_explicit_max_ttl": self.explicit_max_ttl,
            "token_no_default_policy": self.no_default_policy,
            "token_num_uses": self.num_uses,
            "token_period": self.period,
            "token_type": self.token_type,
        }

    @property
    def path(self) -> str:
        suffix = f"/{self.path_suffix}" if self.path_suffix else ""
        return f"auth/token/create/{self.name}{suffix}"

    def policies(self, requested: list[str]) -> list[str]:
        """The policies a token of this role gets, or the 400 Vault answers."""
        requested = sorted({name.lower() for name in requested})
        for name in requested:
            if name in self.disallowed_policies:
                raise VaultError(400, f'token policy "{name}" is disallowed by this role')
        if not self.allowed_policies:
            return requested
        if not requested:
            return [p for p in self.allowed_policies if p not in self.disallowed_policies]
        extra = [p for p in requested if p != "default" and p not in self.allowed_policies]
        if extra:
            raise VaultError(400, f"token policies ({_go_list(requested)}) must be subset of "
                                  "the role's allowed policies "
                                  f"({_go_list(self.allowed_policies)})")
        return requested
