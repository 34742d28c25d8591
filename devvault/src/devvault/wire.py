"""The wire format of Vault's HTTP API: requests, replies, envelopes and Go-style JSON bodies.

Vault writes bodies with Go's ``json.Encoder``: compact, map keys sorted, struct fields in
declaration order, ``<``, ``>`` and ``&`` escaped, a trailing ``\\n``. Plugins that build a raw
body themselves (``logical.RespondWithStatusCode``) use ``json.Marshal``, which has no newline.
A :class:`Struct` is a JSON object that keeps its insertion order (a Go struct); every other
mapping is written with sorted keys (a Go map).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from devvault.tokens import Token

__all__ = [
    "JSON",
    "PERMISSION_DENIED",
    "Reply",
    "Request",
    "Struct",
    "VaultError",
    "encode",
    "envelope",
    "error_body",
    "multierror",
    "new_uuid",
    "no_content",
    "ok",
    "raw",
]

JSON = "application/json"


def multierror(message: str) -> str:
    """Returns ``message`` the way hashicorp/go-multierror prints a one-error list."""
    return f"1 error occurred:\n\t* {message}\n\n"


#: The body Vault sends when a valid token's policies do not allow the request.
PERMISSION_DENIED = multierror("permission denied")


class Struct(dict[str, Any]):
    """A JSON object written in insertion order, like a Go struct (a plain dict is a sorted map)."""


class VaultError(Exception):
    """An error reply: ``status`` and the ``errors`` list of the body (may be empty)."""

    def __init__(self, status: int, *errors: str) -> None:
        super().__init__(f"{status}: {'; '.join(errors)}")
        self.status = status
        self.errors = list(errors)

    def reply(self) -> Reply:
        return Reply(status=self.status, body=error_body(self.errors))


@dataclass(slots=True, kw_only=True)
class Request:
    """One API request, as the router and the backends see it.

    ``op`` is Vault's logical operation: ``read``, ``update`` (POST and PUT), ``delete``, ``list``
    (the LIST verb or ``GET ?list=true``), ``patch`` or ``head``. ``path`` is relative to ``/v1/``
    without leading or trailing slashes. ``data`` holds the query parameters overlaid with the body.
    """

    method: str
    op: str
    path: str
    data: dict[str, Any]
    token: str = ""
    namespace: str = ""
    content_type: str = ""
    #: ``X-Vault-Wrap-TTL`` in seconds (0: do not wrap).
    wrap_ttl: int = 0
    #: Whether the request came over TLS, and the DER client certificate presented, if any.
    tls: bool = False
    client_cert: bytes | None = None
    request_id: str = field(default_factory=lambda: new_uuid())
    #: Filled in by the router.
    mount_type: str = ""
    token_entry: Token | None = None


@dataclass(slots=True, kw_only=True)
class Reply:
    """One HTTP response: status, encoded body and content type (always sent, even on a 204)."""

    status: int
    body: bytes = b""
    content_type: str = JSON
    headers: tuple[tuple[str, str], ...] = ()
    #: The envelope behind ``body`` when it is one (what ``X-Vault-Wrap-TTL`` wraps).
    payload: Struct | None = None


def new_uuid() -> str:
    return str(uuid.uuid4())


def _ordered(value: Any) -> Any:
    if isinstance(value, Struct):
        return {key: _ordered(item) for key, item in value.items()}
    if isinstance(value, dict):
        return {key: _ordered(value[key]) for key in sorted(value)}
    if isinstance(value, list | tuple):
        return [_ordered(item) for item in value]
    return value


def encode(value: Any, *, newline: bool = True) -> bytes:
    """Returns ``value`` as Go's JSON encoder writes it (see the module docstring)."""
    text = json.dumps(_ordered(value), ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    # These characters can only occur inside strings, where Go escapes them (HTML safety).
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                          ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(char, escaped)
    return (text + "\n" if newline else text).encode()


def error_body(errors: list[str]) -> bytes:
    return encode({"errors": errors})


def envelope(
    req: Request,
    *,
    data: Any = None,
    lease_id: str = "",
    renewable: bool = False,
    lease_duration: int = 0,
    warnings: list[str] | None = None,
    auth: Struct | None = None,
    mount_type: str | None = None,
) -> Struct:
    """Returns Vault's ``HTTPResponse`` struct, fields in declaration order."""
    return Struct(
        request_id=req.request_id,
        lease_id=lease_id,
        renewable=renewable,
        lease_duration=lease_duration,
        data=data,
        wrap_info=None,
        warnings=warnings or None,
        auth=auth,
        mount_type=req.mount_type if mount_type is None else mount_type,
    )


def ok(req: Request, data: Any = None, *, inject: bool = False, status: int = 200,
       **fields: Any) -> Reply:
    """Returns a 200 envelope around ``data``.

    ``inject`` copies the ``data`` keys to the top level too, ahead of the envelope, as Vault's
    ``HTTPSysInjector`` does for ``sys/mounts``, ``sys/auth``, ``sys/policy`` and a few others.
    """
    body = envelope(req, data=data, **fields)
    if inject and isinstance(data, dict) and data:
        injected = Struct((key, data[key]) for key in sorted(data))
        injected.update(body)
        body = injected
    return Reply(status=status, body=encode(body), payload=body)


def raw(value: Any, *, status: int = 200, newline: bool = True) -> Reply:
    """Returns ``value`` as the whole body, without the envelope (sys/health, seal-status…)."""
    return Reply(status=status, body=encode(value, newline=newline))


def no_content() -> Reply:
    """Returns 204: no body, but still ``Content-Type: application/json`` as Vault sends it."""
    return Reply(status=204)
