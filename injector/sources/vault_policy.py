"""Which Vault paths a ``vault:`` reference may touch: KV reads and credential-issuing endpoints.

A template author may be another team than the operator (DESIGN §7): the injector's token must not
become theirs to use on any path its policies allow. A reference is allowed when

1. its first segment is not ``auth/``, ``sys/``, ``identity/`` or ``cubbyhole/``, and its mount is
   not one of Vault's own (``system``, ``token``, ``identity``, ``cubbyhole``, and their namespace
   forms): those are the token's own powers (creating tokens, reading policies, the token's private
   cubbyhole where wrapped responses live), never an app's secret; no allowlist can open them;
2. and it is a read (GET) of a KV v1/v2 mount (``secret/app``, ``secret/metadata/app``); a KV
   reference with request parameters would be a write and is refused;
3. or it matches ``vault.allowed_paths`` when the operator set it (full paths, ``*`` = one path
   segment: ``pki_int/issue/web``, ``database/creds/*``), else the issuing endpoint of a known
   engine wherever it is mounted (``ISSUING``: ``creds/*`` of database, aws, …, ``issue/*`` of
   pki). Root and intermediate CA generation, role and config paths, ``rotate``
   endpoints are in neither.

The check runs before any request for (1) by path, and once the mount is known for the rest.
"""

from __future__ import annotations

from collections.abc import Sequence

from injector.errors import AccessDeniedError

__all__ = ["FORBIDDEN_TOPS", "FORBIDDEN_TYPES", "ISSUING", "VaultPathPolicy"]

FORBIDDEN_TOPS = frozenset({"auth", "sys", "identity", "cubbyhole"})
FORBIDDEN_TYPES = frozenset(
    {"system", "ns_system", "token", "ns_token", "identity", "ns_identity", "cubbyhole", "ns_cubbyhole"}
)
#: Engine type → the patterns (relative to its mount) whose requests issue credentials.
ISSUING: dict[str, tuple[str, ...]] = {
    "database": ("creds/*", "static-creds/*"),
    "pki": ("issue/*",),
    "aws": ("creds/*", "sts/*"),
    "gcp": (
        "roleset/*/token",
        "roleset/*/key",
        "static-account/*/token",
        "static-account/*/key",
        "impersonated-account/*/token",
    ),
    "azure": ("creds/*",),
    "consul": ("creds/*",),
    "nomad": ("creds/*",),
    "rabbitmq": ("creds/*",),
    "kubernetes": ("creds/*",),
    "ldap": ("creds/*", "static-cred/*"),
    "openldap": ("creds/*", "static-cred/*"),
    "terraform": ("creds/*",),
    "ssh": ("creds/*",),
}


def _matches(pattern: str, path: str) -> bool:
    """True when ``path`` has as many segments as ``pattern`` and each equals it or is ``*``."""
    wanted = pattern.strip("/").split("/")
    got = path.strip("/").split("/")
    return len(wanted) == len(got) and all(w in ("*", g) for w, g in zip(wanted, got, strict=True))


class VaultPathPolicy:
    """Decides whether a reference's Vault request is allowed (see the module docstring).

    Args:
        allowed_paths: ``vault.allowed_paths`` (full-path patterns), or None for ``ISSUING``.
    """

    def __init__(self, allowed_paths: Sequence[str] | None = None) -> None:
        self._allowed = tuple(allowed_paths) if allowed_paths is not None else None

    def describe(self) -> str:
        """What is allowed, for refusal messages."""
        if self._allowed is not None:
            listed = ", ".join(self._allowed) or "nothing else"
            return f"KV reads, and vault.allowed_paths: {listed}"
        engines = "; ".join(f"{kind}: {', '.join(ISSUING[kind])}" for kind in sorted(ISSUING))
        return (
            f"KV reads, and the credential-issuing paths of secrets engines ({engines}); "
            "set vault.allowed_paths to choose others"
        )

    def check_path(self, ref: str, path: str) -> None:
        """Refuses a path under Vault's own top-level namespaces, before any request.

        Raises:
            AccessDeniedError: naming ``ref`` and what is allowed.
        """
        top = path.strip("/").split("/", 1)[0]
        if top in FORBIDDEN_TOPS:
            raise AccessDeniedError(
                f"{ref}: {top}/ paths are never read through a reference (they hold the injector's own "
                f"token powers, not an app's secrets); allowed: {self.describe()}",
                ref=ref,
            )

    def check_request(self, ref: str, *, path: str, mount_path: str, mount_type: str, kv: bool, write: bool) -> None:
        """Refuses a request that is neither a KV read nor an allowed issuing path.

        Raises:
            AccessDeniedError: naming ``ref``, the mount and what is allowed.
        """
        self.check_path(ref, path)
        if mount_type in FORBIDDEN_TYPES:
            raise AccessDeniedError(
                f"{ref}: {mount_path} is Vault's {mount_type} mount, never read through a reference; "
                f"allowed: {self.describe()}",
                ref=ref,
            )
        if kv and not write:
            return
        rest = path[len(mount_path) :] if path.startswith(mount_path) else path
        if self._allowed is not None:
            if any(_matches(pattern, path) for pattern in self._allowed):
                return
        elif any(_matches(pattern, rest) for pattern in ISSUING.get(mount_type, ())):
            return
        if kv:
            what = "a write to a KV mount"
        elif self._allowed is not None:
            what = "not in vault.allowed_paths"
        else:
            what = f"not a credential-issuing path of its {mount_type or 'unknown'} mount"
        raise AccessDeniedError(f"{ref}: {path} is {what}; allowed: {self.describe()}", ref=ref)
