"""Leases of dynamic secrets and the ``sys/leases`` API (renew, revoke, lookup, list).

A lease belongs to the token that read the secret; revoking or expiring that token revokes the
lease, as in Vault. A lease ends as ``expired`` (its TTL ran out on the server clock) or
``revoked``; either way the backend's ``on_end`` callback runs, so the credentials stop working.
Ended leases are remembered so tests can ask what happened to them (``DevVault.lease_state``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from devvault.mounts import Clock, route, unsupported_op
from devvault.params import get_bool, get_duration, get_str, random_text, rfc3339
from devvault.wire import Reply, Request, VaultError, no_content, ok

__all__ = ["Lease", "LeaseManager", "LeaseState", "LeasesAPI"]

LeaseState = Literal["active", "expired", "revoked", "unknown"]


@dataclass(slots=True, kw_only=True)
class Lease:
    id: str
    issue_time: float
    expire_time: float
    max_expire: float
    ttl: int
    renewable: bool
    token_accessor: str | None
    namespace: str = ""
    last_renewal: float | None = None
    state: LeaseState = "active"
    on_end: Callable[[], None] | None = None


class LeaseManager:
    """Every lease the server issued, live or ended."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._leases: dict[str, Lease] = {}
        self._next_expiry = float("inf")

    def create(self, path: str, *, ttl: int, max_ttl: int, renewable: bool,
               token_accessor: str | None, on_end: Callable[[], None] | None = None,
               namespace: str = "", namespace_id: str = "") -> Lease:
        """Registers a lease of ``ttl`` seconds (capped at ``max_ttl``) under ``path``.

        A lease outside the root namespace ends in ``.<namespace id>``, as in Vault.
        """
        now = self._clock.now()
        ttl = min(ttl, max_ttl)
        suffix = f".{namespace_id}" if namespace else ""
        lease = Lease(id=f"{path.strip('/')}/{random_text(24)}{suffix}", issue_time=now,
                      expire_time=now + ttl, max_expire=now + max_ttl, ttl=ttl,
                      renewable=renewable, token_accessor=token_accessor, on_end=on_end,
                      namespace=namespace)
        self._leases[lease.id] = lease
        self._next_expiry = min(self._next_expiry, lease.expire_time)
        return lease

    def _end(self, lease: Lease, state: LeaseState) -> None:
        if lease.state != "active":
            return
        lease.state = state
        if lease.on_end is not None:
            lease.on_end()

    def _get(self, lease_id: str, namespace: str | None) -> Lease | None:
        """The lease, if it exists in ``namespace`` (None: any namespace)."""
        lease = self._leases.get(lease_id)
        if lease is None or (namespace is not None and lease.namespace != namespace):
            return None
        return lease

    def _live(self, lease_id: str, namespace: str | None) -> Lease:
        if not lease_id:
            raise VaultError(400, "lease_id must be specified")
        lease = self._get(lease_id, namespace)
        if lease is None or lease.state == "revoked":
            raise VaultError(400, "lease not found")
        return lease

    def renew(self, lease_id: str, increment: int,
              namespace: str | None = None) -> tuple[Lease, int]:
        """Extends a lease by ``increment`` (default: its TTL), never past its max TTL."""
        lease = self._live(lease_id, namespace)
        now = self._clock.now()
        if lease.state == "expired" or now >= lease.expire_time:
            self._end(lease, "expired")
            raise VaultError(400, "lease expired")
        if not lease.renewable:
            raise VaultError(400, "lease is not renewable")
        granted = max(0, int(min(increment or lease.ttl, lease.max_expire - now)))
        lease.expire_time = now + granted
        lease.last_renewal = now
        self._next_expiry = min(self._next_expiry, lease.expire_time)
        return lease, granted

    def revoke(self, lease_id: str, namespace: str | None = None) -> None:
        lease = self._get(lease_id, namespace)
        if lease is not None:
            self._end(lease, "revoked")

    def revoke_prefix(self, prefix: str, namespace: str | None = None) -> None:
        for lease in list(self._leases.values()):
            if lease.id.startswith(prefix) and namespace in (None, lease.namespace):
                self._end(lease, "revoked")

    def revoke_namespace(self, namespace: str) -> None:
        for lease in list(self._leases.values()):
            if lease.namespace == namespace:
                self._end(lease, "revoked")

    def revoke_token(self, accessor: str) -> None:
        """Revokes every lease the token with ``accessor`` obtained."""
        for lease in list(self._leases.values()):
            if lease.token_accessor == accessor:
                self._end(lease, "revoked")

    def expire(self, now: float) -> None:
        if now < self._next_expiry:
            return
        live = [lease for lease in self._leases.values() if lease.state == "active"]
        for lease in live:
            if now >= lease.expire_time:
                self._end(lease, "expired")
        self._next_expiry = min((lease.expire_time for lease in live if lease.state == "active"),
                                default=float("inf"))

    def state(self, lease_id: str) -> LeaseState:
        lease = self._leases.get(lease_id)
        return "unknown" if lease is None else lease.state

    def active(self, prefix: str = "", namespace: str | None = None) -> list[str]:
        return sorted(lease.id for lease in self._leases.values()
                      if lease.state == "active" and lease.id.startswith(prefix)
                      and namespace in (None, lease.namespace))

    def lookup_data(self, lease_id: str, namespace: str | None = None) -> dict[str, Any]:
        if not lease_id:
            raise VaultError(400, "lease_id must be specified")
        lease = self._get(lease_id, namespace)
        if lease is None or lease.state != "active":
            raise VaultError(400, "invalid lease")
        now = self._clock.now()
        return {
            "expire_time": rfc3339(lease.expire_time),
            "id": lease.id,
            "issue_time": rfc3339(lease.issue_time),
            "last_renewal": None if lease.last_renewal is None else rfc3339(
                lease.last_renewal),
            "renewable": lease.renewable,
            "ttl": max(0, int(lease.expire_time - now)),
        }


_ROUTES = [
    (r"(?:leases/)?renew(?:/(?P<id>.+))?", "renew"),
    (r"(?:leases/)?revoke(?:/(?P<id>.+))?", "revoke"),
    (r"(?:leases/)?revoke-prefix/(?P<prefix>.+)", "revoke-prefix"),
    (r"(?:leases/)?revoke-force/(?P<prefix>.+)", "revoke-prefix"),
    (r"leases/lookup", "lookup"),
    (r"leases/lookup/(?P<prefix>.+)", "list"),
]


class LeasesAPI:
    """The ``sys/leases/*``, ``sys/renew`` and ``sys/revoke`` endpoints, in the request's namespace.

    ``revoke-force`` is ``revoke-prefix`` here: no backend revocation can fail, so there is
    nothing to ignore (both need sudo, as in Vault).
    """

    def __init__(self, leases: LeaseManager) -> None:
        self._leases = leases

    def handle(self, req: Request, rel: str) -> Reply:
        """Serves ``rel`` (relative to ``sys/``)."""
        name, args = route(rel, _ROUTES)
        if name == "list" or (name == "lookup" and req.op == "list"):
            if req.op != "list":
                raise unsupported_op()
            prefix = args.get("prefix", "").strip("/")
            prefix = prefix + "/" if prefix else ""
            keys = sorted({lease_id[len(prefix):].split("/")[0] + (
                "/" if "/" in lease_id[len(prefix):] else "")
                for lease_id in self._leases.active(prefix, req.namespace)})
            if not keys:
                raise VaultError(404)
            return ok(req, {"keys": keys})
        if req.op != "update":
            raise unsupported_op()
        lease_id = args.get("id") or get_str(req.data, "lease_id")
        ns = req.namespace
        if name == "renew":
            lease, granted = self._leases.renew(lease_id, get_duration(req.data, "increment"), ns)
            return ok(req, None, lease_id=lease.id, renewable=lease.renewable,
                      lease_duration=granted)
        if name == "lookup":
            return ok(req, self._leases.lookup_data(lease_id, ns))
        if name == "revoke-prefix":
            self._leases.revoke_prefix(args["prefix"].strip("/"), ns)
            return no_content()
        if not lease_id:
            raise VaultError(400, "lease_id must be specified")
        self._leases.revoke(lease_id, ns)
        if not get_bool(req.data, "sync", True):
            return Reply(status=202)
        return no_content()
