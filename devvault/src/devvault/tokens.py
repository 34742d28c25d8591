"""Tokens: the store (TTLs, renewal, revocation, use counts), role token fields, the auth block.

TTL rules follow Vault's token store: a token lives ``ttl`` seconds (default: the mount's 768h),
never past its max TTL (role or mount max, and ``explicit_max_ttl``); a periodic token gets
``period`` at each renewal and has no max unless ``explicit_max_ttl`` is set; a token with the
``root`` policy and no TTL never expires. Revoking a token revokes its children and its leases.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from devvault.mounts import Clock, Mount
from devvault.params import (
    DEFAULT_LEASE_TTL,
    MAX_LEASE_TTL,
    get_bool,
    get_duration,
    get_int,
    get_list,
    get_str,
    go_duration,
    random_text,
    rfc3339,
)
from devvault.wire import Struct, VaultError

__all__ = ["Token", "TokenParams", "TokenStore", "auth_block", "sanitize_policies"]


@dataclass(slots=True, kw_only=True)
class Token:
    """A service token. ``expire_time`` None = never expires; ``max_expire`` None = no hard cap."""

    id: str
    accessor: str
    policies: list[str]
    path: str
    display_name: str
    meta: dict[str, str] | None
    issue_time: float
    creation_ttl: int
    expire_time: float | None
    max_expire: float | None
    explicit_max_ttl: int = 0
    period: int = 0
    renewable: bool = True
    num_uses: int = 0
    orphan: bool = False
    parent: str | None = None
    last_renewal: float | None = None
    root: bool = False
    #: The namespace the token was created in (``""`` root, else ``ns1/``): it is valid there and
    #: in that namespace's children only.
    namespace: str = ""
    #: The token role it was created against (``auth/token/create/{role}``), if any.
    role: str = ""
    children: set[str] = field(default_factory=set)

    def ttl(self, now: float) -> int:
        return 0 if self.expire_time is None else max(0, int(self.expire_time - now))

    def live(self, now: float) -> bool:
        return self.expire_time is None or now < self.expire_time


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenParams:
    """The ``token_*`` fields every auth method role accepts (Vault's ``tokenutil``)."""

    ttl: int = 0
    max_ttl: int = 0
    explicit_max_ttl: int = 0
    period: int = 0
    policies: tuple[str, ...] = ()
    no_default_policy: bool = False
    num_uses: int = 0
    token_type: str = "default"

    @classmethod
    def parse(cls, data: Mapping[str, Any], base: TokenParams | None = None) -> TokenParams:
        """Reads ``token_ttl`` (or legacy ``ttl``) and friends; absent fields keep ``base``."""
        base = base or cls()

        def pick(new: str, legacy: str | None) -> str | None:
            if data.get(new) is not None:
                return new
            return legacy if legacy and data.get(legacy) is not None else None

        def dur(new: str, legacy: str | None, old: int) -> int:
            key = pick(new, legacy)
            return old if key is None else get_duration(data, key)

        key = pick("token_policies", "policies")
        params = cls(
            ttl=dur("token_ttl", "ttl", base.ttl),
            max_ttl=dur("token_max_ttl", "max_ttl", base.max_ttl),
            explicit_max_ttl=dur("token_explicit_max_ttl", None, base.explicit_max_ttl),
            period=dur("token_period", "period", base.period),
            policies=base.policies if key is None else tuple(get_list(data, key)),
            no_default_policy=get_bool(data, "token_no_default_policy", base.no_default_policy),
            num_uses=get_int(data, "token_num_uses", base.num_uses),
            token_type=get_str(data, "token_type", base.token_type) or "default",
        )
        if params.max_ttl and params.ttl > params.max_ttl:
            raise VaultError(400, "'token_ttl' cannot be greater than 'token_max_ttl'")
        if params.token_type not in ("default", "service", "default-service"):
            raise VaultError(400, f"dev server: token_type {params.token_type!r} is not "
                                  "supported (only service tokens)")
        return params

    def data(self) -> dict[str, Any]:
        """The fields as a role read returns them."""
        return {
            "token_bound_cidrs": [],
            "token_explicit_max_ttl": self.explicit_max_ttl,
            "token_max_ttl": self.max_ttl,
            "token_no_default_policy": self.no_default_policy,
            "token_num_uses": self.num_uses,
            "token_period": self.period,
            "token_policies": list(self.policies),
            "token_ttl": self.ttl,
            "token_type": self.token_type,
        }


def sanitize_policies(policies: list[str] | tuple[str, ...], *, add_default: bool) -> list[str]:
    """Lower-cases, de-duplicates and sorts; adds ``default`` unless told not to or root."""
    names = {name.strip().lower() for name in policies if name.strip()}
    if add_default and "root" not in names:
        names.add("default")
    return sorted(names)


def auth_block(token: Token, lease_duration: int | None = None) -> Struct:
    """Vault's ``HTTPAuth`` struct for ``token``, fields in declaration order.

    ``lease_duration`` defaults to the TTL the token was created with.
    """
    return Struct(
        client_token=token.id,
        accessor=token.accessor,
        policies=token.policies,
        token_policies=token.policies,
        metadata=token.meta,
        lease_duration=token.creation_ttl if lease_duration is None else lease_duration,
        renewable=token.renewable and token.expire_time is not None,
        entity_id="",
        token_type="service",  # noqa: S106 (a token type, not a password)
        orphan=token.orphan,
        mfa_requirement=None,
        num_uses=token.num_uses,
    )


class TokenStore:
    """Every live token, by id and by accessor."""

    def __init__(self, clock: Clock, on_revoke: Callable[[Token], None]) -> None:
        self._clock = clock
        self._on_revoke = on_revoke
        self._by_id: dict[str, Token] = {}
        self._by_accessor: dict[str, Token] = {}
        self._next_expiry = float("inf")

    def add_root(self, token_id: str) -> Token:
        now = self._clock.now()
        token = Token(id=token_id, accessor=random_text(24), policies=["root"],
                      path="auth/token/root", display_name="root", meta=None, issue_time=now,
                      creation_ttl=0, expire_time=None, max_expire=None, renewable=False,
                      orphan=True, root=True)
        self._index(token)
        return token

    def _index(self, token: Token) -> None:
        self._by_id[token.id] = token
        self._by_accessor[token.accessor] = token
        if token.expire_time is not None:
            self._next_expiry = min(self._next_expiry, token.expire_time)

    def issue(self, *, policies: list[str], ttl: int, max_ttl: int = MAX_LEASE_TTL,
              explicit_max_ttl: int = 0, period: int = 0, renewable: bool = True,
              num_uses: int = 0, display_name: str, meta: dict[str, str] | None, path: str,
              parent: Token | None = None, token_id: str | None = None, namespace: str = "",
              role: str = "") -> Token:
        """Creates a token; ``ttl`` 0 with the root policy means it never expires."""
        now = self._clock.now()
        limit = min(x for x in (max_ttl, explicit_max_ttl, MAX_LEASE_TTL) if x)
        if "root" in policies and not (ttl or period or explicit_max_ttl):
            creation_ttl, expire, max_expire = 0, None, None
        elif period:
            creation_ttl = min(period, explicit_max_ttl) if explicit_max_ttl else period
            expire = now + creation_ttl
            max_expire = now + explicit_max_ttl if explicit_max_ttl else None
        else:
            creation_ttl = min(ttl or DEFAULT_LEASE_TTL, limit)
            expire, max_expire = now + creation_ttl, now + limit
        if token_id is not None and token_id in self._by_id:
            raise VaultError(400, "cannot create a token with a duplicate ID")
        token = Token(id=token_id or "hvs." + random_text(24), accessor=random_text(24),
                      policies=policies, path=path, display_name=display_name, meta=meta,
                      issue_time=now, creation_ttl=creation_ttl, expire_time=expire,
                      max_expire=max_expire, explicit_max_ttl=explicit_max_ttl, period=period,
                      renewable=renewable, num_uses=num_uses, orphan=parent is None,
                      parent=parent.accessor if parent else None, namespace=namespace,
                      role=role)
        if parent is not None:
            parent.children.add(token.accessor)
        self._index(token)
        return token

    def issue_login(self, params: TokenParams, mount: Mount, *, display_name: str,
                    meta: dict[str, str], extra_policies: tuple[str, ...] = ()) -> Token:
        """Creates the orphan token an auth method's login returns."""
        policies = sanitize_policies(params.policies + extra_policies,
                                     add_default=not params.no_default_policy)
        source = mount.path.strip("/").replace("/", "-")
        return self.issue(
            policies=policies, ttl=params.ttl or mount.default_ttl,
            max_ttl=params.max_ttl or mount.max_ttl, explicit_max_ttl=params.explicit_max_ttl,
            period=params.period, num_uses=params.num_uses, meta=meta,
            display_name=f"{source}-{display_name}".strip("-"), path=f"auth/{mount.path}login",
            namespace=mount.namespace,
        )

    def lookup(self, token_id: str) -> Token | None:
        token = self._by_id.get(token_id)
        return token if token is not None and token.live(self._clock.now()) else None

    def by_accessor(self, accessor: str) -> Token | None:
        token = self._by_accessor.get(accessor)
        return token if token is not None and token.live(self._clock.now()) else None

    def renew(self, token: Token, increment: int) -> tuple[int, list[str]]:
        """Extends ``token``; returns the granted TTL and Vault's capping warning, if any."""
        now = self._clock.now()
        if token.expire_time is None:
            raise VaultError(400, "lease not found")
        if not token.renewable:
            raise VaultError(400, "lease is not renewable")
        wanted = token.period or increment or token.creation_ttl
        granted = wanted
        warnings: list[str] = []
        if token.max_expire is not None and now + wanted > token.max_expire:
            granted = max(0, int(token.max_expire - now))
            warnings.append(f'TTL of "{go_duration(wanted)}" exceeded the effective max_ttl of '
                            f'"{go_duration(granted)}"; TTL value is capped accordingly')
        token.expire_time = now + granted
        token.last_renewal = now
        self._next_expiry = min(self._next_expiry, token.expire_time)
        return granted, warnings

    def revoke(self, token: Token) -> None:
        """Revokes ``token``, its child tokens and its leases."""
        if self._by_id.pop(token.id, None) is None:
            return
        self._by_accessor.pop(token.accessor, None)
        for accessor in list(token.children):
            child = self._by_accessor.get(accessor)
            if child is not None:
                self.revoke(child)
        self._on_revoke(token)

    def revoke_path_prefix(self, prefix: str, namespace: str = "") -> None:
        """Revokes every token created under ``prefix`` (an auth mount being disabled)."""
        for token in [t for t in self._by_id.values()
                      if t.path.startswith(prefix) and t.namespace == namespace]:
            self.revoke(token)

    def revoke_namespace(self, namespace: str) -> None:
        """Revokes every token of ``namespace`` (being deleted)."""
        for token in [t for t in self._by_id.values() if t.namespace == namespace]:
            self.revoke(token)

    def consume(self, token: Token) -> None:
        """Counts one use of a limited-use token, revoking it when the last use is spent."""
        if token.num_uses > 0:
            token.num_uses -= 1
            if token.num_uses == 0:
                self.revoke(token)

    def expire(self, now: float) -> None:
        """Revokes every token whose TTL ran out."""
        if now < self._next_expiry:
            return
        for token in [t for t in self._by_id.values() if not t.live(now)]:
            self.revoke(token)
        self._next_expiry = min((t.expire_time for t in self._by_id.values()
                                 if t.expire_time is not None), default=float("inf"))

    def lookup_data(self, token: Token, now: float, *, by_accessor: bool = False) -> dict[str, Any]:
        """What ``lookup`` returns; a lookup by accessor never reveals the token (``id: ""``)."""
        data: dict[str, Any] = {
            "accessor": token.accessor,
            "creation_time": int(token.issue_time),
            "creation_ttl": token.creation_ttl,
            "display_name": token.display_name,
            "entity_id": "",
            "expire_time": None if token.expire_time is None else rfc3339(token.expire_time),
            "explicit_max_ttl": token.explicit_max_ttl,
            "id": "" if by_accessor else token.id,
            "meta": token.meta,
            "namespace_path": token.namespace,
            "num_uses": token.num_uses,
            "orphan": token.orphan,
            "path": token.path,
            "policies": token.policies,
            "ttl": token.ttl(now),
            "type": "service",
        }
        if not token.root:
            data["issue_time"] = rfc3339(token.issue_time)
            data["renewable"] = token.renewable
        if token.period:
            data["period"] = token.period
        if token.role:
            data["role"] = token.role
        return data
