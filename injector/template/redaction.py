"""Masking the values revealed to a template, and their common encodings, in error messages."""

from __future__ import annotations

import base64
import json
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from injector.redact import MASK, MIN_LENGTH

# --- redaction -------------------------------------------------------------------------------------

#: A value's prefix this long or longer is masked too.
_PROBE = 12


class Redactor:
    """Values revealed to a template, and their common encodings, to mask in error messages.

    A needle is each leaf string of at least MIN_LENGTH characters (str, bytes, numbers inside
    mappings and lists), its repr / JSON / URL-quoted / base64 forms and its lines. ``redact`` masks
    every needle, and any prefix of ``_PROBE`` or more characters of one (Python truncates long reprs,
    as in ``int()``'s "invalid literal" message).
    """

    __slots__ = ("_needles",)

    def __init__(self) -> None:
        self._needles: set[str] = set()

    def add(self, value: Any) -> None:
        for leaf in _leaves(value):
            if isinstance(leaf, bytes):
                forms = {repr(leaf)[2:-1], *_b64_forms(leaf)}
            else:
                forms = {
                    leaf,
                    repr(leaf)[1:-1],
                    json.dumps(leaf)[1:-1],
                    json.dumps(leaf, ensure_ascii=False)[1:-1],
                    urllib.parse.quote(leaf, safe=""),
                    *_b64_forms(leaf.encode("utf-8")),
                    *leaf.splitlines(),
                }
            self._needles.update(f for f in forms if len(f) >= MIN_LENGTH)

    def redact(self, text: str) -> str:
        """Masks every needle, and every prefix of at least ``_PROBE`` characters of a longer one."""
        spans: list[tuple[int, int]] = []
        for needle in self._needles:
            probe = needle[:_PROBE]
            start = text.find(probe)
            while start >= 0:
                n = len(probe)
                end = min(len(needle), len(text) - start)
                while n < end and text[start + n] == needle[n]:
                    n += 1
                spans.append((start, start + n))
                start = text.find(probe, start + 1)
        if not spans:
            return text
        out, pos = [], 0
        for start, end in sorted(spans):
            if end <= pos:
                continue
            out.append(text[pos:start] if start > pos else "")
            if start >= pos:
                out.append(MASK)
            pos = max(pos, end)
        out.append(text[pos:])
        return "".join(out)


def _leaves(value: Any) -> Iterator[str | bytes]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, bytes):
        try:
            yield value.decode("utf-8")
        except UnicodeDecodeError:
            yield bytes(value)
    elif isinstance(value, bool) or value is None:
        return
    elif isinstance(value, int | float):
        yield str(value)
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _leaves(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _leaves(item)


def _b64_forms(data: bytes) -> Iterable[str]:
    return (
        base64.b64encode(data).decode("ascii").rstrip("="),
        base64.urlsafe_b64encode(data).decode("ascii").rstrip("="),
    )

