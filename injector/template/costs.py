"""Size and cost estimates the sandbox (``filters.Sandbox``) checks before a call whose result could
be large, so that a template is refused *before* Python allocates the text, not after.

``limit`` is the cap on one intermediate value: ``limits.max_output_bytes``, the same cap the
operators (``*``, ``+``, ``~``, ``%``) use. Each estimate is an upper bound of the result's length in
characters (approximate only where Python adds quotes or escapes), and each ``check_*`` raises
``LimitError`` (a ``SecurityError``) naming the limit, never a value:

- ``text_size``: ``len(str(value))`` of a value, containers included (a list of 300 references to
  one 1 MB string prints as 300 MB), walked without building the text and stopped past ``limit``.
- ``SizedFormatter``: ``str.format`` / ``format_map``, field by field: nested fields in a format spec
  (``{0:{1}}``) are resolved first, then the width and precision are read and the field's size
  checked before it is formatted, and the running total (repeated fields count each time) before
  the result is joined.
- ``percent_size``: ``fmt % values`` and the ``format`` filter, the same way.
- ``replace_size``, ``expandtabs_size``, ``translate_size``, ``indent_size``: the string methods and
  filters whose result is a multiple of their input.
- ``collect``: the items of a ``join``, gathered once (a generator too) with their total size.
- ``check_wordwrap``: ``textwrap`` is slow per line and quadratic in a word longer than the width.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, ItemsView, Iterable, KeysView, Mapping, Sequence, ValuesView
from typing import Any

from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEscapeFormatter, SandboxedFormatter
from jinja2.utils import Namespace

__all__ = [
    "MAX_ITEMS",
    "MAX_WRAP_LINES",
    "WRAP_COPY_BUDGET",
    "LimitError",
    "SizedEscapeFormatter",
    "SizedFormatter",
    "check_ints",
    "check_size",
    "check_text",
    "check_wordwrap",
    "collect",
    "expandtabs_size",
    "indent_size",
    "percent_size",
    "replace_size",
    "spec_size",
    "text_size",
    "too_large",
    "translate_size",
]

#: Elements one list or tuple (``*``, ``+``, ``batch``, ``slice``, ``join``, ``sum``) may hold.
MAX_ITEMS = 1_000_000
#: Lines one ``wordwrap`` may make: textwrap costs about a microsecond per line.
MAX_WRAP_LINES = 100_000
#: Characters ``wordwrap`` may copy splitting words longer than the width (~0.3 s of memcpy).
WRAP_COPY_BUDGET = 1 << 33

#: A standard format spec: [[fill]align][sign][z][#][0][width][grouping][.precision][type].
_SPEC = re.compile(r"(?:.?[<>=^])?[-+ ]?z?#?0?(\d*)[_,]?(?:\.(\d*))?[a-zA-Z%]?", re.DOTALL)
#: What textwrap splits words on (not str.split's wider idea of whitespace).
_NOT_WRAP_SPACE = "[^\t\n\x0b\x0c\r ]"
#: A float formatted with ``f`` is at most this long before its precision (1e308).
_FLOAT_DIGITS = 320


class LimitError(SecurityError):
    """A size or cost limit refused an operation; the message names the operation, never a value."""


def too_large(what: str, limit: int) -> LimitError:
    """The error for a result over ``limit``; ``what`` names the operation, never a value."""
    return LimitError(f"{what} would exceed limits.max_output_bytes ({limit} bytes)")


def check_size(size: int, limit: int, what: str) -> None:
    if size > limit:
        raise too_large(what, limit)


def check_ints(limit: int, *values: Any) -> None:
    """Refuses a width or count over ``limit`` (``ljust(10**9)``, ``center(10**9)``…)."""
    for value in values:
        if isinstance(value, int) and not isinstance(value, bool) and value > limit:
            raise too_large("a width or count", limit)


def check_text(limit: int, what: str, *values: Any) -> None:
    """Refuses values whose text (``str()``) would be over ``limit``; strings are already in memory."""
    for value in values:
        if not isinstance(value, str) and text_size(value, limit) > limit:
            raise too_large(what, limit)


# --- the text of a value ----------------------------------------------------------------------------


def text_size(value: Any, limit: int, *, indent: int = 0) -> int:
    """Returns about ``len(str(value))``, or ``limit + 1`` as soon as it is larger than ``limit``.

    Containers are walked (iteratively, so depth is no problem) without making their text: each
    element costs at least two characters, so the walk stops after at most ``limit / 2`` of them.
    ``indent``: characters of indentation per nesting level of each element (``tojson(indent=N)``).
    """
    total = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack and total <= limit:
        item, depth = stack.pop()
        total += depth * indent
        children = _children(item)
        if children is None:
            total += _scalar_size(item, quoted=depth > 0)
        else:
            total += 2 + 2 * len(children)
            if total <= limit:
                stack.extend((child, depth + 1) for child in children)
    return total if total <= limit else limit + 1


def _scalar_size(value: Any, *, quoted: bool) -> int:
    if isinstance(value, str):
        return len(value) + (2 if quoted else 0)  # a string inside a container prints with quotes
    if isinstance(value, bytes | bytearray):
        return len(value) + 3
    if isinstance(value, bool) or value is None:
        return 5
    if isinstance(value, int):
        return value.bit_length() // 3 + 2
    if isinstance(value, float):
        return 24
    return 64  # another object: its repr (cycler, joiner, a macro…) is short


def _children(value: Any) -> Sequence[Any] | None:
    """The parts of a value whose text includes theirs (a mapping's keys and values), or None."""
    if isinstance(value, Mapping):
        return [part for pair in value.items() for part in pair]
    if isinstance(value, list | tuple | set | frozenset | KeysView | ValuesView | ItemsView):
        return list(value)
    if isinstance(value, Namespace):
        attrs: dict[str, Any] = getattr(value, "_Namespace__attrs", {})
        return [part for pair in attrs.items() for part in pair]
    return None


# --- str.format ---------------------------------------------------------------------------------------


def spec_size(spec: str, limit: int) -> tuple[int, int | None]:
    """Returns the width and precision of a (resolved) format spec, refusing either over ``limit``.

    A spec that is not a standard one (an object's own ``__format__``) counts its largest number
    as the width.
    """
    match = _SPEC.fullmatch(spec)
    numbers = [g for g in match.groups() if g] if match else re.findall(r"\d+", spec)
    for number in numbers:
        if len(number) > 12 or int(number) > limit:
            raise too_large("a format width or precision", limit)
    if match is None:
        return max(map(int, numbers), default=0), None
    width, precision = match.groups()
    return int(width or 0), int(precision) if precision else None


def _field_size(value: Any, width: int, precision: int | None, limit: int) -> int:
    """Returns the largest size ``value`` formatted with this width and precision can have."""
    if isinstance(value, str):
        size = len(value) if precision is None else min(len(value), precision)
    elif isinstance(value, float):
        size = _FLOAT_DIGITS + (precision or 6)
    elif isinstance(value, int) and not isinstance(value, bool):
        size = value.bit_length() + 2 + (precision or 0)
    else:
        size = text_size(value, limit)
    return max(size, width)


class SizedFormatter(SandboxedFormatter):
    """Jinja's sandboxed ``str.format`` that checks each field, and the running total, first.

    Python's ``Formatter`` resolves the nested fields of a spec (``{0:{1}}``) before it formats the
    outer field, so ``format_field`` sees the final spec. Literal text is at most the format string.
    """

    def __init__(self, env: Any, limit: int, **kwargs: Any) -> None:
        super().__init__(env, **kwargs)
        self._limit = limit
        self._total = 0

    def vformat(self, format_string: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> str:
        self._total = len(format_string)
        check_size(self._total, self._limit, "str.format")
        return super().vformat(format_string, args, kwargs)

    def convert_field(self, value: Any, conversion: str | None) -> Any:
        if conversion is not None:
            check_text(self._limit, "str.format", value)
        return super().convert_field(value, conversion)

    def format_field(self, value: Any, format_spec: str) -> Any:
        width, precision = spec_size(format_spec, self._limit)
        check_size(self._total + _field_size(value, width, precision, self._limit), self._limit, "str.format")
        text = super().format_field(value, format_spec)
        self._total += len(text)
        return text


class SizedEscapeFormatter(SizedFormatter, SandboxedEscapeFormatter):
    """``SizedFormatter`` for ``Markup.format`` (it escapes each field)."""


# --- printf-style % -----------------------------------------------------------------------------


def percent_size(fmt: str, values: Any, limit: int) -> int:
    """Returns about ``len(fmt % values)``: literal text plus each conversion's widest result.

    Parsed as CPython does (a ``(key)`` may nest parentheses, ``*`` takes a width or precision from
    the arguments). Stops past ``limit``; a format Python would refuse is left for Python to refuse.
    """
    positional = values if isinstance(values, tuple) else (values,)
    mapping = values if isinstance(values, Mapping) else None
    total, pos, index = 0, 0, 0
    while total <= limit:
        start = fmt.find("%", pos)
        if start < 0:
            return total + len(fmt) - pos
        total += start - pos
        (key, width, precision, conversion), pos = _percent_spec(fmt, start + 1)
        if not conversion:
            break  # "incomplete format": Python refuses it
        if conversion == "%":
            total += 1
            continue
        width_value, index = _percent_number(width, positional, index, limit)
        precision_value, index = _percent_number(precision, positional, index, limit)
        if key is not None:
            value = mapping.get(key) if mapping is not None else None
        elif index < len(positional):
            value, index = positional[index], index + 1
        else:
            break  # "not enough arguments": Python refuses it
        total += _percent_field(value, width_value, precision_value, conversion, limit)
    return total


_PERCENT_SPEC = re.compile(r"[-+ #0]*(\*|\d*)(?:\.(\*|\d*))?[hlL]?(.?)", re.DOTALL)


def _percent_spec(fmt: str, pos: int) -> tuple[tuple[str | None, str, str | None, str], int]:
    """Parses one conversion after its ``%``: ((key, width, precision, conversion), next position)."""
    key = None
    if fmt.startswith("(", pos):
        depth, begin = 1, pos + 1
        pos += 1
        while pos < len(fmt) and depth:
            depth += {"(": 1, ")": -1}.get(fmt[pos], 0)
            pos += 1
        key = fmt[begin : pos - 1]
    match = _PERCENT_SPEC.match(fmt, pos)
    assert match is not None  # noqa: S101 -- every part of the pattern is optional
    width, precision, conversion = match.groups()
    return (key, width, precision, conversion), match.end()


def _percent_number(text: str | None, positional: tuple[Any, ...], index: int, limit: int) -> tuple[Any, int]:
    """A width or precision (None when absent): its digits, or for ``*`` the next argument."""
    if text == "*":
        number = positional[index] if index < len(positional) else 0
        check_ints(limit, abs(number) if isinstance(number, int) else 0)
        return number, index + 1
    if text is None:
        return None, index
    check_ints(limit, int(text or 0) if len(text) <= 12 else limit + 1)
    return int(text or 0), index


def _percent_field(value: Any, width: Any, precision: Any, conversion: str, limit: int) -> int:
    """The widest text one ``%`` conversion of ``value`` can give."""
    pad: int = abs(width) if isinstance(width, int) else 0
    digits = abs(precision) if isinstance(precision, int) else None
    if conversion in "sra":
        size = text_size(value, limit) + (2 if conversion != "s" else 0)
        size = size if digits is None else min(size, digits)
    elif isinstance(value, float) or conversion in "eEfFgG":
        size = _FLOAT_DIGITS + (6 if digits is None else digits)
    else:
        size = text_size(value, limit) + (digits or 0)
    return max(size, pad)


# --- string methods and filters -----------------------------------------------------------------------


def replace_size(s: str | bytes, old: Any, new: Any, count: Any = -1) -> int:
    """``len(s.replace(old, new, count))`` without replacing: one growth per occurrence counted."""
    kind = str if isinstance(s, str) else bytes
    if not isinstance(old, kind) or not isinstance(new, kind) or len(new) <= len(old):
        return len(s)
    found = s.count(old)  # type: ignore[arg-type]  # an empty old occurs len(s) + 1 times
    if isinstance(count, int) and count >= 0:
        found = min(found, count)
    return len(s) + found * (len(new) - len(old))


def expandtabs_size(s: str | bytes, tabsize: Any = 8) -> int:
    """At most ``len(s)`` plus ``tabsize - 1`` per tab."""
    tab = "\t" if isinstance(s, str) else b"\t"
    grow = tabsize - 1 if isinstance(tabsize, int) and tabsize > 1 else 0
    return len(s) + s.count(tab) * grow  # type: ignore[arg-type]


def translate_size(s: str, table: Any, limit: int) -> int:
    """``len(s.translate(table))``: each distinct character's replacement times its count."""
    lookup: Callable[[int], Any]
    if isinstance(table, Mapping):
        lookup = table.get
    elif isinstance(table, list | tuple):
        lookup = lambda code: table[code] if code < len(table) else None  # noqa: E731
    elif isinstance(table, str | bytes):
        return len(s)  # indexing a string gives one character
    else:
        raise LimitError("str.translate: a table other than a dict or list cannot be size-checked")
    total = len(s)
    for char, found in Counter(s).items():
        replacement = lookup(ord(char))
        if isinstance(replacement, str) and len(replacement) > 1:
            total += found * (len(replacement) - 1)
            if total > limit:
                break
    return total


def indent_size(s: str, width: Any = 4, first: Any = False) -> int:
    """``len(s | indent(width, first))`` at most: one indentation per line, and one more for ``first``."""
    indention = len(width) if isinstance(width, str) else width if isinstance(width, int) else 0
    lines = len(s.splitlines()) + 1
    return len(s) + 1 + (lines + bool(first)) * max(indention, 0)


def check_wordwrap(s: str, width: Any, break_long_words: Any, wrapstring: str, limit: int) -> None:
    """Refuses a ``wordwrap`` with too many lines, quadratic word splitting, or a result over ``limit``.

    textwrap takes about a microsecond per line, and splits a word longer than the width one line
    at a time, copying the rest of the word each time (so a 1 MB word into lines of 1 is 10¹² copies).
    """
    if not isinstance(width, int) or width <= 0:
        return  # textwrap refuses it
    what = f"wordwrap of {len(s)} characters into lines of {width}"
    lines = len(s) // width + len(s.splitlines())
    if lines > MAX_WRAP_LINES:
        raise LimitError(f"{what} would make more than {MAX_WRAP_LINES} lines")
    check_size(len(s) + lines * max(len(wrapstring) - 1, 0), limit, what)
    if not break_long_words or len(s) // width * len(s) // 2 <= WRAP_COPY_BUDGET:
        return  # even one word as long as the text would be cheap enough
    copies = 0
    for word in re.finditer(f"{_NOT_WRAP_SPACE}{{{width + 1},}}", s):
        size = word.end() - word.start()
        copies += size // width * size // 2
        if copies > WRAP_COPY_BUDGET:
            raise LimitError(f"{what} would take too long: words longer than the width are split a line at a time")


def collect(items: Iterable[Any], limit: int, *, size: Callable[[Any], int], what: str) -> list[Any]:
    """Returns ``items`` as a list, refusing (while iterating, before the next item is kept) more than
    MAX_ITEMS of them or a total ``size`` over ``limit``."""
    out: list[Any] = []
    total = 0
    for item in items:
        if len(out) >= MAX_ITEMS:
            raise LimitError(f"{what}: more than {MAX_ITEMS} items")
        total += size(item)
        check_size(total, limit, what)
        out.append(item)
    return out
