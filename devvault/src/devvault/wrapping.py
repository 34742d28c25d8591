"""Response wrapping: ``X-Vault-Wrap-TTL`` and ``sys/wrapping/{wrap,unwrap,lookup,rewrap}``.

With ``X-Vault-Wrap-TTL`` a 200 response is kept on the server and the client gets a
``wrap_info`` envelope instead (vault-http-api.md §6): a single-use wrapping token (a real token
with the ``response-wrapping`` policy, usable only on ``sys/wrapping/*``), its accessor, the TTL,
the creation time and path, and ``wrapped_accessor`` when the wrapped response created a token or
an AppRole secret ID. Unwrapping returns the original response once and revokes the wrapping
token; a second unwrap is 400 ``wrapping token is not valid or does not exist``. Responses without
a body (204) are not wrapped, as in Vault.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from devvault.mounts import unsupported_op
from devvault.params import get_str, rfc3339
from devvault.tokens import Token
from devvault.wire import Reply, Request, Struct, VaultError, encode, ok

if TYPE_CHECKING:
    from devvault.core import Core

__all__ = ["WRAPPING_POLICY", "Wrapper", "is_wrapping", "wrapping_allows"]

#: The only policy of a wrapping token (Vault's built-in, never listed in ``sys/policy``).
WRAPPING_POLICY = "response-wrapping"
#: The paths a wrapping token may call, relative to ``sys/``.
WRAPPING_PATHS = frozenset({"wrapping/unwrap", "wrapping/lookup", "wrapping/rewrap"})
_INVALID = "wrapping token is not valid or does not exist"


@dataclass(slots=True, kw_only=True)
class _Wrapped:
    payload: Struct
    creation_path: str
    creation_time: float
    ttl: int
    wrapped_accessor: str


class Wrapper:
    """The wrapped responses, by wrapping token ID."""

    def __init__(self, core: Core) -> None:
        self._core = core
        self._wrapped: dict[str, _Wrapped] = {}

    def forget(self, token_id: str) -> None:
        """Drops what a revoked or expired wrapping token held."""
        self._wrapped.pop(token_id, None)

    def wrap(self, req: Request, payload: Struct) -> Reply:
        """Stores ``payload`` (a full response envelope) and returns the ``wrap_info`` envelope."""
        accessor = ""
        auth = payload.get("auth")
        data = payload.get("data")
        if isinstance(auth, dict):
            accessor = str(auth.get("accessor", ""))
        elif isinstance(data, dict) and req.path.endswith(("/secret-id", "/custom-secret-id")):
            accessor = str(data.get("secret_id_accessor", ""))
        entry = _Wrapped(payload=payload, creation_path=req.path,
                         creation_time=self._core.clock.now(), ttl=req.wrap_ttl,
                         wrapped_accessor=accessor)
        return self._envelope(req, entry)

    def _envelope(self, req: Request, entry: _Wrapped) -> Reply:
        token = self._core.tokens.issue(
            policies=[WRAPPING_POLICY], ttl=entry.ttl, renewable=False, display_name="",
            meta=None, path=entry.creation_path, namespace=req.namespace)
        self._wrapped[token.id] = entry
        info = Struct(token=token.id, accessor=token.accessor, ttl=entry.ttl,
                      creation_time=rfc3339(entry.creation_time),
                      creation_path=entry.creation_path)
        if entry.wrapped_accessor:
            info["wrapped_accessor"] = entry.wrapped_accessor
        body = Struct(request_id="", lease_id="", renewable=False, lease_duration=0, data=None,
                      wrap_info=info, warnings=None, auth=None, mount_type="")
        return Reply(status=200, body=encode(body))

    def handle(self, req: Request, op: str) -> Reply:
        """``sys/wrapping/{op}``."""
        if req.op != "update":
            raise unsupported_op()
        if op == "wrap":
            if not req.wrap_ttl:
                raise VaultError(400, "endpoint requires response wrapping to be used")
            return ok(req, dict(req.data) or None)
        token, entry = self._entry(req)
        if op == "lookup":
            return ok(req, {"creation_path": entry.creation_path,
                            "creation_time": rfc3339(entry.creation_time),
                            "creation_ttl": entry.ttl})
        self._core.tokens.revoke(token)
        self._wrapped.pop(token.id, None)
        if op == "rewrap":
            return self._envelope(req, entry)
        return Reply(status=200, body=encode(entry.payload), payload=entry.payload)

    def _entry(self, req: Request) -> tuple[Token, _Wrapped]:
        """The wrapping token from the body's ``token`` or else the request's own token."""
        token_id = get_str(req.data, "token")
        caller: Token | None = req.token_entry
        if token_id:
            if caller is not None and caller.id == token_id:
                # Vault spends the token's one use authenticating the request itself.
                raise VaultError(400, _INVALID)
            found = self._core.tokens.lookup(token_id)
        else:
            found = caller if caller is not None and is_wrapping(caller) else None
        entry = self._wrapped.get(found.id) if found is not None else None
        if found is None or entry is None:
            raise VaultError(400, _INVALID)
        return found, entry


def is_wrapping(token: Token) -> bool:
    return token.policies == [WRAPPING_POLICY]


def wrapping_allows(path: str) -> bool:
    """A wrapping token may only unwrap, look up or rewrap itself."""
    return path.startswith("sys/") and path[4:] in WRAPPING_PATHS
