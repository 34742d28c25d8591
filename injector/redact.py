r"""A process-wide safety net on every log record: registered secret values are scrubbed, and control
characters are escaped.

Scrubbing is the second line of defence. The first is that values travel as ``Secret`` (masked repr)
and that messages are built from references and key names, never values: a template error carries
the template, the line and the exception class, not the exception's text (injector.template.render).

Escaping: a key name, a path or a backend message holding a newline, a carriage return or an ANSI
escape would otherwise forge log lines or rewrite a terminal. Every C0 and C1 control character
(and DEL) in a record's message and error text is written as ``\n``, ``\r``, ``\t`` or ``\xNN``,
in the text and the JSON format alike.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["MASK", "RedactingFilter", "escape_controls", "forget_value", "register_value", "scrub"]

MASK = "<redacted>"
#: Shorter values are not scrubbed: masking "a" or "10" everywhere would garble every message.
MIN_LENGTH = 4

#: How many leaves of values no longer in use are still scrubbed (the most recently retired): a
#: rotated password is still worth masking for a while, but the registry must not grow with every
#: value a months-long sidecar has ever seen (nor the pattern, rebuilt as it changes).
RETIRED_KEPT = 512

_lock = threading.Lock()
#: leaf → how many live values hold it (the cache registers and forgets values as they come and go).
_live: dict[str, int] = {}
#: Recently retired leaves, oldest first (a dict as an ordered set).
_retired: dict[str, None] = {}
_values: set[str] = set()
#: ``_values``, longest first (so a value that contains another is masked whole); None once stale.
_ordered: list[str] | None = None
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
#: ``re.compile`` keeps the last 512 patterns it compiled in a module cache: the patterns built
#: here spell out secret values, and must not stay alive there (with a pattern of every value, the
#: cache grew by 1 MiB in 30 s of churn, measured by bench/churn.py). The compiler underneath has
#: no cache; ``re.compile`` is the fallback should a Python lack it.
_compile: Any = getattr(getattr(re, "_compiler", None), "compile", None) or re.compile


def register_value(value: Any) -> None:
    """Registers every string leaf of ``value`` (str, bytes, mappings, lists) for scrubbing."""
    global _ordered
    leaves = set(_leaves(value))
    with _lock:
        for leaf in leaves:
            _live[leaf] = _live.get(leaf, 0) + 1
            _retired.pop(leaf, None)
            if leaf not in _values:
                _values.add(leaf)
                _ordered = None


def forget_value(value: Any) -> None:
    """The opposite of ``register_value``: ``value`` is no longer in use (replaced or dropped).

    Its leaves stay scrubbed while another live value holds them, and then among the most recent
    ``RETIRED_KEPT`` retired leaves.
    """
    global _ordered
    leaves = set(_leaves(value))
    with _lock:
        for leaf in leaves:
            count = _live.get(leaf, 0) - 1
            if count > 0:
                _live[leaf] = count
                continue
            _live.pop(leaf, None)
            if leaf in _values:
                _retired[leaf] = None
        while len(_retired) > RETIRED_KEPT:
            oldest = next(iter(_retired))
            del _retired[oldest]
            _values.discard(oldest)
            _ordered = None


def scrub(text: str) -> str:
    """Returns ``text`` with every registered value replaced by ``<redacted>``.

    Only the values that occur in ``text`` go into the pattern: a value absent from the text cannot
    match, so the result is the same as with a pattern of every value (leftmost match, longest value
    first). A pattern of every value had to be compiled again after each change of the values
    (2.7 ms for 100 values, 27 ms for 1,000) and held a copy of each; the substring tests cost
    ~4 µs per log line for 100 values, and nearly every line contains none.
    """
    global _ordered
    with _lock:
        if not _values:
            return text
        if _ordered is None:
            _ordered = sorted(_values, key=len, reverse=True)
        present = [value for value in _ordered if value in text]
    if not present:
        return text
    return _compile("|".join(map(re.escape, present)), 0).sub(MASK, text)  # type: ignore[no-any-return]


def escape_controls(text: str) -> str:
    """Returns ``text`` with C0/C1 control characters and DEL written as ``\\n``, ``\\r``, ``\\t``, ``\\xNN``."""
    return _CONTROLS.sub(lambda m: _NAMED.get(m.group(), f"\\x{ord(m.group()):02x}"), text)


def _leaves(value: Any) -> Iterable[str]:
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            return
    if isinstance(value, str):
        yield from _string_leaves(value)
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _leaves(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _leaves(item)
    elif isinstance(value, int | float) and not isinstance(value, bool) and len(str(value)) >= MIN_LENGTH:
        yield str(value)


def _string_leaves(value: str) -> Iterable[str]:
    """The string, each of its lines, and (for a JSON document) every value inside it."""
    if len(value) >= MIN_LENGTH:
        yield value
        for line in value.splitlines():
            if len(line) >= MIN_LENGTH and line != value:
                yield line
    # A JSON secret (Secrets Manager) is one string; its #KEY values must be masked too.
    if value.lstrip().startswith(("{", "[")):
        try:
            parsed = json.loads(value)
        except ValueError:
            return
        if isinstance(parsed, dict | list):
            yield from _leaves(parsed)


class RedactingFilter(logging.Filter):
    """Scrubs registered values from a record's final message (args are merged first) and escapes
    its control characters; an exception becomes one escaped line (its type and scrubbed text)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = escape_controls(scrub(message))
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        if record.exc_info and record.exc_info[1] is not None:
            # Tracebacks are rendered later by the formatter; keep the type, drop the text.
            exc = record.exc_info[1]
            record.exc_text = escape_controls(f"{type(exc).__name__}: {scrub(str(exc))}")
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = escape_controls(scrub(record.exc_text))
        if record.stack_info:
            record.stack_info = escape_controls(record.stack_info)
        return True
