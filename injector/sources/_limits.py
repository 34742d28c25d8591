"""Size and nesting bounds every backend applies to a value before it is parsed or stored.

A value is data from a backend the operator trusts for its values, not for their shapes: a 3 KB
JSON text of ``[[[[…`` is enough to make ``json.loads`` (in the cache, the redactor, ``#KEY``
selection, ``fromjson``) raise ``RecursionError`` and end the process. So each source checks, at its
own boundary and before anything parses the value:

1. size: at most ``limits.max_secret_bytes`` bytes;
2. nesting: at most ``limits.max_depth`` levels, counted on the JSON *text* by a scan that does not
   recurse (``json_depth``), and on already-parsed mappings iteratively; every string inside a value
   that would be parsed as JSON later (it starts with ``{`` or ``[``) is scanned too.

An over-limit value is that reference's ``SourceError`` (not retryable: the same value comes back);
messages give sizes and limits, never content.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from itertools import accumulate

from injector.errors import SourceError

__all__ = ["ValueLimits", "json_depth"]

# A JSON string literal; its brackets do not nest. Possessive, so the scan stays linear.
_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_STEP = [0] * 256
for _open in b"[{":
    _STEP[_open] = 1
for _close in b"]}":
    _STEP[_close] = -1


def json_depth(text: str | bytes) -> int:
    """Returns how deep the arrays and objects of a JSON text nest, without parsing (or recursing).

    Brackets inside string literals are skipped. An unterminated string makes the count an
    over-estimate, never an under-estimate.
    """
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    brackets = _STRING.sub(b"", data).translate(None, _NOT_BRACKETS)
    return max(accumulate(map(_STEP.__getitem__, brackets), initial=0))


def _looks_like_json(value: str | bytes) -> bool:
    head = value[:64].lstrip()
    return head[:1] in ("{", "[") if isinstance(head, str) else head[:1] in (b"{", b"[")


class ValueLimits:
    """``limits.max_secret_bytes`` and ``limits.max_depth``, and the checks that apply them."""

    __slots__ = ("max_bytes", "max_depth")

    def __init__(self, *, max_bytes: int, max_depth: int) -> None:
        self.max_bytes = max_bytes
        self.max_depth = max_depth

    def too_large(self, where: str, size: int | str, *, ref: str | None = None) -> SourceError:
        """The error for a value of ``size`` bytes; ``where`` starts the message (a reference)."""
        return SourceError(
            f"{where}: the value is {size} bytes, over limits.max_secret_bytes ({self.max_bytes}); "
            "raise limits.max_secret_bytes if a value this large is expected",
            ref=ref,
        )

    def too_deep(self, where: str, *, ref: str | None = None) -> SourceError:
        """The error for a value nested deeper than ``max_depth``."""
        return SourceError(
            f"{where}: the value nests deeper than limits.max_depth ({self.max_depth}) levels; "
            "raise limits.max_depth if such nesting is expected",
            ref=ref,
        )

    def check_text(self, where: str, text: str | bytes, *, ref: str | None = None) -> None:
        """Checks the size and (when it looks like JSON) the nesting of one text value."""
        size = len(text) if isinstance(text, bytes) else len(text.encode("utf-8", "surrogatepass"))
        if size > self.max_bytes:
            raise self.too_large(where, size, ref=ref)
        if _looks_like_json(text) and json_depth(text) > self.max_depth:
            raise self.too_deep(where, ref=ref)

    def check(self, where: str, value: object, *, ref: str | None = None) -> None:
        """Checks a value of any shape: nesting of mappings and lists, and every text inside it.

        Raises:
            SourceError: naming ``where`` (and carrying ``ref``), the size or depth, and the limit.
        """
        pending: list[tuple[object, int]] = [(value, 0)]
        total = 0
        while pending:
            node, depth = pending.pop()
            if isinstance(node, str | bytes):
                self.check_text(where, node, ref=ref)
                total += len(node)
            elif isinstance(node, Mapping | list | tuple):
                if depth >= self.max_depth:
                    raise self.too_deep(where, ref=ref)
                items = node.items() if isinstance(node, Mapping) else ((None, item) for item in node)
                for key, item in items:
                    if isinstance(key, str):
                        total += len(key)
                    pending.append((item, depth + 1))
            if total > self.max_bytes:
                raise self.too_large(where, f"more than {total}", ref=ref)

