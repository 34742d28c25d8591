"""The template language: the value types a secret becomes, the filters injector adds to Jinja2,
the sandbox they run in, and the redaction of values from messages. ``render.py`` drives it.

Value types (``to_template_value``):

- ``SecretMap``: a ``dict`` for a whole secret that is a mapping (KV data, a JSON-object string,
  SSM by path). ``str()`` is compact JSON; a missing key (``.pasword`` or ``["pasword"]``) raises
  ``NotFoundError`` naming the reference and the keys that exist. ``.get(key, default)`` is the
  explicit way to read an optional key.
- ``SecretList``: a ``list`` inside a secret; ``str()`` is compact JSON too.
- ``Binary``: ``bytes`` that are not UTF-8. Printing one, or using it as text, raises
  ``RenderError`` saying to use ``| b64encode``; a ``secret:`` template writes raw bytes instead.
- ``Pending``: a reference the runner has not fetched yet. It absorbs ``.attr`` / ``[key]`` and
  prints as nothing, but any other use (text, comparison, truth, iteration) raises
  ``PendingError``, which stops the render: a value built from a pending one must never become a
  reference, a branch or a file.

Filters (``FILTERS``), each also listed in templates/README.md:

``b64encode``, ``b64decode``, ``tojson``, ``fromjson``, ``toyaml``, ``shell_quote``,
``dotenv_quote``, ``urlquote``, and strict ``int`` / ``float`` (Jinja's return 0 on bad input).
Filters raise ``RenderError`` with messages that never quote the value.

``Sandbox`` is Jinja2's ``ImmutableSandboxedEnvironment`` with these filters, without ``lipsum``, and
with size checks, before the call, wherever text can grow without output (estimates in
``injector.limits``): ``*``, ``+``, ``**``, ``%``, ``~``; ``str.format`` / ``format_map`` field by
field (nested widths, repeated fields); ``replace``, ``join``, ``expandtabs``, ``translate`` and the
padding methods; filters that make text of a container (``string``, ``tojson``…), ``format``,
``replace``, ``join``, ``indent``, ``center``, ``wordwrap`` (also its line count and word-splitting
time), ``batch``, ``slice`` and ``sum``; lists and tuples of more than a million items. A result
over the output limit is refused with a ``SecurityError`` naming ``limits.max_output_bytes``. Every
filter and call checks the time limit, and the new text filters and string methods return counts
toward the render's work budget. ``Redactor`` masks revealed values (and their repr, JSON, base64
and URL-quoted forms, and truncated prefixes) in error messages.
"""

from __future__ import annotations

import base64
import binascii
import json
import shlex
import types
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import update_wrapper, wraps
from typing import Any, NoReturn

import yaml
from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame, optimizeconst
from jinja2.exceptions import SecurityError
from jinja2.filters import make_attrgetter
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from markupsafe import Markup

from injector.errors import NotFoundError, RenderError
from injector.limits import (
    MAX_ITEMS,
    SizedEscapeFormatter,
    SizedFormatter,
    check_ints,
    check_size,
    check_text,
    check_wordwrap,
    collect,
    expandtabs_size,
    indent_size,
    percent_size,
    replace_size,
    text_size,
    translate_size,
)
from injector.redact import MASK, MIN_LENGTH

__all__ = [
    "FILTERS",
    "Binary",
    "Pending",
    "PendingError",
    "Redactor",
    "Sandbox",
    "SecretList",
    "SecretMap",
    "b64decode",
    "b64encode",
    "dotenv_quote",
    "fromjson",
    "shell_quote",
    "strict_float",
    "strict_int",
    "to_plain",
    "to_template_value",
    "tojson",
    "toyaml",
    "urlquote",
]

_NO_DEFAULT: Any = object()


class PendingError(Exception):
    """A value that is not fetched yet was used for more than printing; the render stops here.

    Deliberately not a LookupError/TypeError/AttributeError: Jinja swallows those in attribute
    lookups, and this one must reach the renderer.
    """


class SecretMap(dict[str, Any]):
    """A whole secret that is a mapping; see the module docstring."""

    __slots__ = ("_label",)

    def __init__(self, data: Mapping[str, Any], *, label: str) -> None:
        super().__init__()
        self._label = label
        for key, value in data.items():
            self[str(key)] = to_template_value(value, label=f"{label}.{key}" if "#" in label else f"{label}#{key}")

    def __missing__(self, key: object) -> NoReturn:
        keys = ", ".join(sorted(self)) or "none"
        raise NotFoundError(f"{self._label}: key {str(key)!r} not found (keys: {keys})", ref=self._label)

    def __str__(self) -> str:
        return json.dumps(to_plain(self), separators=(",", ":"), ensure_ascii=False)

    def __repr__(self) -> str:
        return f"<secret map {self._label} (keys: {', '.join(sorted(self))})>"

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


class SecretList(list[Any]):
    """A list inside a secret (a PKI ``ca_chain``, say); ``str()`` is compact JSON, like SecretMap."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"<secret list of {len(self)} item(s)>"

    def __str__(self) -> str:
        return json.dumps(to_plain(self), separators=(",", ":"), ensure_ascii=False)

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


class Binary(bytes):
    """Bytes that are not UTF-8: fine for ``| b64encode`` and ``secret:`` templates, never as text."""

    def __str__(self) -> str:
        raise RenderError("a binary (non-UTF-8) value cannot be written as text; use | b64encode")

    def __format__(self, spec: str) -> str:
        return str(self)


class Pending:
    """A value the runner has not fetched yet; see the module docstring."""

    __slots__ = ()
    # What the sandbox and Jinja probe before a call, answered so that `.get("k")` chains too.
    unsafe_callable = False
    alters_data = False
    jinja_pass_arg = None

    def __getattr__(self, name: str) -> Pending:
        if name.startswith("__"):
            raise AttributeError(name)
        return self

    def __getitem__(self, key: object) -> Pending:
        return self

    def __call__(self, *args: object, **kwargs: object) -> Pending:
        return self

    def __repr__(self) -> str:
        return "<pending>"

    def _stop(self, *args: object) -> NoReturn:
        raise PendingError("a value that is not fetched yet was used")

    __str__ = __format__ = __bool__ = __iter__ = __len__ = __contains__ = _stop
    __eq__ = __ne__ = __lt__ = __le__ = __gt__ = __ge__ = _stop
    __int__ = __float__ = __index__ = __neg__ = __pos__ = _stop
    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = _stop
    __truediv__ = __rtruediv__ = __floordiv__ = __rfloordiv__ = __mod__ = __rmod__ = _stop
    __pow__ = __rpow__ = _stop
    __hash__ = object.__hash__


def to_template_value(value: Any, *, label: str, parse_json: bool = False) -> Any:
    """Returns what a template sees for a revealed secret value.

    Args:
        label: the log-safe reference text, for missing-key messages.
        parse_json: True for a whole-secret reference: a JSON-object string becomes a mapping.
    """
    if isinstance(value, Mapping):
        return SecretMap(value, label=label)
    if isinstance(value, bytes) and not isinstance(value, Binary):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return Binary(value)
    if isinstance(value, str) and parse_json and value.lstrip().startswith("{"):
        try:
            parsed = json.loads(value)
        except ValueError:
            return value
        return SecretMap(parsed, label=label) if isinstance(parsed, dict) else value
    if isinstance(value, list | tuple):
        return SecretList(to_template_value(item, label=label) for item in value)
    return value


def to_plain(value: Any) -> Any:
    """Returns ``value`` with SecretMap/Binary turned into dict/bytes, for json and yaml."""
    if isinstance(value, Pending):
        raise PendingError("a value that is not fetched yet was used")
    if isinstance(value, Mapping):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_plain(item) for item in value]
    if isinstance(value, Binary):
        return bytes(value)
    return value


def _as_bytes(value: Any, name: str) -> bytes:
    if isinstance(value, bytes):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8")
    raise RenderError(f"{name} expects a string or bytes, got {_kind(value)}; select a key first")


def _kind(value: Any) -> str:
    if isinstance(value, Mapping):
        return "a mapping"
    return "a " + type(value).__name__


def b64encode(value: Any) -> Any:
    """Returns standard base64 (with padding) of a string (as UTF-8) or of bytes."""
    if isinstance(value, Pending):
        return value
    return base64.b64encode(_as_bytes(value, "b64encode")).decode("ascii")


def b64decode(value: Any) -> Any:
    """Decodes standard or URL-safe base64 (whitespace ignored): a string if UTF-8, else bytes."""
    if isinstance(value, Pending):
        return value
    raw = b"".join(_as_bytes(value, "b64decode").split())
    if b"-" in raw or b"_" in raw:
        raw = raw.replace(b"-", b"+").replace(b"_", b"/")
    raw += b"=" * (-len(raw) % 4)
    try:
        decoded = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise RenderError("b64decode: the value is not valid base64") from None
    return to_template_value(decoded, label="b64decode")


def tojson(value: Any, indent: int | None = None, sort_keys: bool = False) -> Any:
    """Returns ``json.dumps(value)`` (no HTML escaping, UTF-8 kept); ``indent`` pretty-prints."""
    if isinstance(value, Pending):
        return value
    try:
        return json.dumps(to_plain(value), indent=indent, sort_keys=sort_keys, ensure_ascii=False)
    except TypeError:
        raise RenderError("tojson: a binary value cannot be JSON; use | b64encode") from None


def fromjson(value: Any) -> Any:
    """Parses a JSON string (a secret that holds JSON under a key, say) into a value."""
    if isinstance(value, Pending):
        return value
    try:
        parsed = json.loads(_as_bytes(value, "fromjson"))
    except ValueError as exc:
        raise RenderError(
            f"fromjson: not valid JSON ({type(exc).__name__} at position {getattr(exc, 'pos', '?')})"
        ) from None
    return to_template_value(parsed, label="fromjson")


class _YamlDumper(yaml.SafeDumper):
    """Block style; multi-line strings (certificates, keys) as ``|`` literal blocks."""


def _represent_str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|" if "\n" in data else None)


_YamlDumper.add_representer(str, _represent_str)
_WIDE = 2**31


def toyaml(value: Any, indent: int = 2) -> Any:
    """Returns YAML without a trailing newline.

    A mapping or list becomes a block (pipe it through ``| indent(N)`` to nest it); a string becomes
    one double-quoted scalar (so ``no``, ``1.0`` or a multi-line key stay strings on one line); a
    number, boolean or null becomes its YAML literal.
    """
    if isinstance(value, Pending):
        return value
    plain = to_plain(value)
    if isinstance(plain, str):
        text = yaml.dump(plain, Dumper=yaml.SafeDumper, default_style='"', width=_WIDE, allow_unicode=True)
    elif plain is None or isinstance(plain, bool | int | float):
        return json.dumps(plain)
    else:
        text = yaml.dump(
            plain,
            Dumper=_YamlDumper,
            default_flow_style=False,
            sort_keys=False,
            allow_unicode=True,
            indent=indent,
            width=_WIDE,
        )
    return text.removesuffix("\n...\n").rstrip("\n")


def shell_quote(value: Any) -> Any:
    """Quotes a value for a POSIX shell (``shlex.quote``): single quotes, ``'`` as ``'"'"'``."""
    if isinstance(value, Pending):
        return value
    return shlex.quote(_text(value, "shell_quote"))


def dotenv_quote(value: Any) -> Any:
    """Quotes a value for a dotenv file so that docker compose and python-dotenv read it back as is.

    The rules, in order (the first that applies):

    1. No ``$`` in the value: double quotes, with ``\\`` → ``\\\\``, ``"`` → ``\\"``, newline →
       ``\\n``, carriage return → ``\\r``. python-dotenv, docker compose (compose-go), godotenv
       and the Ruby and Node dotenv libraries all read this back unchanged.
    2. A ``$`` but no ``'``, ``\\``, newline or carriage return: single quotes, as is. Docker
       compose, godotenv and Ruby/Node dotenv do not interpolate inside single quotes, and
       python-dotenv only ever expands ``${…}`` (see below).
    3. Otherwise: rule 1 plus ``$`` → ``\\$``. Docker compose, godotenv and Ruby/Node dotenv read
       it back; python-dotenv does not know ``\\$`` and keeps the backslash.

    python-dotenv expands ``${NAME}`` inside any quotes and has no escape for it: a value holding
    ``${`` reads back unchanged there only with ``dotenv_values(..., interpolate=False)``.

    A NUL byte is refused (an environment variable cannot hold one), and so is a value ending in
    ``\\`` that rule 1 would write: compose-go would read the closing quote as escaped.
    """
    if isinstance(value, Pending):
        return value
    text = _text(value, "dotenv_quote")
    if "\x00" in text:
        raise RenderError("dotenv_quote: the value contains a NUL character, which no environment variable can hold")
    if "$" in text and not any(c in text for c in "'\\\n\r"):
        return f"'{text}'"
    if text.endswith("\\"):
        raise RenderError("dotenv_quote: a value ending in a backslash is misread by docker compose; use b64encode")
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return '"' + escaped.replace("$", "\\$") + '"'


def urlquote(value: Any) -> Any:
    """Percent-encodes everything but ``A-Z a-z 0-9 - . _ ~`` (unlike ``urlencode``, ``/`` too).

    For user names and passwords inside a URL: ``postgresql://{{ u | urlquote }}:{{ p | urlquote }}@…``.
    """
    if isinstance(value, Pending):
        return value
    return urllib.parse.quote(_text(value, "urlquote"), safe="")


def strict_int(value: Any, default: Any = _NO_DEFAULT, base: int = 10) -> Any:
    """``int`` that fails on bad input instead of returning 0 (unless a default is given).

    Like Jinja's: a string is read in ``base``, and ``"3.7"`` (base 10) gives 3.
    """
    if isinstance(value, Pending):
        return value
    try:
        return int(value, base) if isinstance(value, str) else int(value)
    except (TypeError, ValueError) as exc:
        error = exc
    if base == 10:
        try:
            return int(float(value))
        except (TypeError, ValueError, OverflowError):
            pass
    if default is not _NO_DEFAULT:
        return default
    raise error


def strict_float(value: Any, default: Any = _NO_DEFAULT) -> Any:
    """``float`` that fails on bad input instead of returning 0.0 (unless a default is given)."""
    if isinstance(value, Pending):
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        if default is not _NO_DEFAULT:
            return default
        raise


def _text(value: Any, name: str) -> str:
    if isinstance(value, Mapping):
        raise RenderError(f"{name} expects a string, got a mapping; select a key first")
    if isinstance(value, bytes):
        if isinstance(value, Binary):
            raise RenderError(f"{name}: a binary (non-UTF-8) value cannot be written as text; use | b64encode")
        return value.decode("utf-8")
    return str(value)


FILTERS: Mapping[str, Callable[..., Any]] = {
    "b64encode": b64encode,
    "b64decode": b64decode,
    "tojson": tojson,
    "fromjson": fromjson,
    "toyaml": toyaml,
    "shell_quote": shell_quote,
    "dotenv_quote": dotenv_quote,
    "urlquote": urlquote,
    "int": strict_int,
    "float": strict_float,
}


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


# --- the sandbox ---------------------------------------------------------------------------------

#: Filters that make text of their arguments (``str()``): a container's text is size-checked first.
_TEXT_FILTERS = frozenset(
    {
        "capitalize", "center", "dotenv_quote", "e", "escape", "forceescape", "format", "indent", "lower",
        "pprint", "replace", "safe", "shell_quote", "string", "striptags", "title", "tojson", "toyaml", "trim",
        "truncate", "upper", "urlencode", "urlize", "urlquote", "wordcount", "wordwrap", "xmlattr",
    }
)  # fmt: skip
#: Filters whose int arguments are widths or lengths (``center(10**9)``).
_WIDTH_FILTERS = frozenset({"center", "indent", "truncate", "wordwrap"})
#: String methods whose int arguments are widths (``ljust(10**9)``).
_WIDTH_METHODS = frozenset({"center", "ljust", "rjust", "zfill"})
#: The largest ``sum(start=[])`` work: each list added copies the total so far.
_SUM_COPIES = 1 << 26


def _format_guard(limit: int, value: Any, *args: Any, **kwargs: Any) -> None:
    check_size(percent_size(str(value), kwargs or args, limit), limit, "the format filter")


def _replace_guard(limit: int, s: Any, old: Any, new: Any, count: Any = None) -> None:
    size = replace_size(str(s), str(old), str(new), -1 if count is None else count)
    check_size(size, limit, "the replace filter")


def _indent_guard(limit: int, s: Any, width: Any = 4, first: Any = False, blank: Any = False) -> None:
    check_size(indent_size(str(s), width, first), limit, "the indent filter")


def _wordwrap_guard(
    limit: int,
    s: Any,
    width: Any = 79,
    break_long_words: Any = True,
    wrapstring: Any = None,
    break_on_hyphens: Any = True,
) -> None:
    check_wordwrap(str(s), width, break_long_words, "\n" if wrapstring is None else str(wrapstring), limit)


def _tojson_guard(limit: int, value: Any, indent: Any = None, sort_keys: Any = False) -> None:
    step = len(indent) if isinstance(indent, str) else indent if isinstance(indent, int) else -1
    check_size(text_size(value, limit, indent=step + 1), limit, "the tojson filter")


def _batch_guard(limit: int, value: Any, linecount: Any = 0, fill_with: Any = None) -> None:
    _check_count("batch", linecount)


def _slice_guard(limit: int, value: Any, slices: Any = 0, fill_with: Any = None) -> None:
    _check_count("slice", slices)


def _check_count(name: str, count: Any) -> None:
    if isinstance(count, int) and count > MAX_ITEMS:
        raise SecurityError(f"the {name} filter: a count over {MAX_ITEMS} items")


#: Checks run before a filter, with the filter's arguments (after its environment or context).
_FILTER_GUARDS: Mapping[str, Callable[..., None]] = {
    "format": _format_guard,
    "replace": _replace_guard,
    "indent": _indent_guard,
    "wordwrap": _wordwrap_guard,
    "tojson": _tojson_guard,
    "batch": _batch_guard,
    "slice": _slice_guard,
}


class _CodeGenerator(CodeGenerator):
    """Routes ``~`` through the environment, so string concatenation is size-checked too."""

    @optimizeconst
    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.checked_concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


class Sandbox(ImmutableSandboxedEnvironment):
    """Jinja2's immutable sandbox plus size checks on operators, calls, ``~`` and filters.

    ``max_size`` caps each intermediate value (``limits.max_output_bytes``); the estimates are in
    ``injector.limits``. ``tick`` is called at every call, filter, operator and ``~``: the renderer's
    time-limit check. ``spend`` is given the size of each new string a filter or string method
    returns: the renderer's per-render work budget. The environment has this module's FILTERS, and
    no ``lipsum`` (it makes text of any size).
    """

    intercepted_binops = frozenset({"*", "**", "+", "%"})
    code_generator_class = _CodeGenerator

    def __init__(
        self,
        *,
        max_size: int,
        tick: Callable[[], None],
        spend: Callable[[int], None] | None = None,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        self.max_size = max_size
        self._tick = tick
        self._spend = spend or (lambda size: None)
        self.globals.pop("lipsum", None)
        self.filters.update(FILTERS)
        self.filters["join"] = self._join(self.filters["join"])
        self.filters["sum"] = self._sum(self.filters["sum"])
        for name, func in list(self.filters.items()):
            self.filters[name] = self._guarded(name, func)

    def _guarded(self, name: str, func: Callable[..., Any]) -> Callable[..., Any]:
        """Wraps a filter: time check, size checks of its arguments, and its new text spent."""
        skip = 1 if getattr(func, "jinja_pass_arg", None) is not None else 0
        guard = _FILTER_GUARDS.get(name)
        limit = self.max_size

        @wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            self._tick()
            data = args[skip:]
            if name in _WIDTH_FILTERS:
                check_ints(limit, *data[1:], *kwargs.values())
            if name in _TEXT_FILTERS:
                check_text(limit, f"the {name} filter", *data, *kwargs.values())
            if guard is not None:
                guard(limit, *data, **kwargs)
            result = func(*args, **kwargs)
            if isinstance(result, str | bytes) and not any(result is arg for arg in data):
                self._spend(len(result))
            return result

        return wrapper

    def _join(self, join: Callable[..., Any]) -> Callable[..., Any]:
        """The join filter, with its items (and the separators between them) size-checked first."""
        limit = self.max_size

        @wraps(join)
        def wrapper(eval_ctx: Any, value: Any, d: Any = "", attribute: Any = None) -> Any:
            check_text(limit, "the join filter", d)
            if attribute is not None:
                value = map(make_attrgetter(eval_ctx.environment, attribute), value)
            step = len(str(d))
            items = collect(value, limit, size=lambda item: text_size(item, limit) + step, what="the join filter")
            return join(eval_ctx, items, d)

        return wrapper

    def _sum(self, sum_filter: Callable[..., Any]) -> Callable[..., Any]:
        """The sum filter; with a list or tuple ``start`` it concatenates, so its size is checked."""

        @wraps(sum_filter)
        def wrapper(environment: Any, iterable: Any, attribute: Any = None, start: Any = 0) -> Any:
            if not isinstance(start, list | tuple):
                return sum_filter(environment, iterable, attribute, start)
            if attribute is not None:
                iterable = map(make_attrgetter(environment, attribute), iterable)
            items, size, copies = [], len(start), 0
            for item in iterable:
                size += len(item) if isinstance(item, list | tuple) else 0
                copies += size
                if size > MAX_ITEMS or copies > _SUM_COPIES:
                    raise SecurityError(
                        f"the sum filter: lists of more than {MAX_ITEMS} items in all, or too many lists"
                    )
                items.append(item)
            return sum_filter(environment, items, None, start)

        return wrapper

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """Jinja's sandboxed ``str.format`` / ``format_map``, with each field size-checked first."""
        if not isinstance(value, types.MethodType | types.BuiltinMethodType) or value.__name__ not in (
            "format",
            "format_map",
        ):
            return None
        owner = value.__self__
        if not isinstance(owner, str):
            return None
        formatter: SizedFormatter
        if isinstance(owner, Markup):
            formatter = SizedEscapeFormatter(self, self.max_size, escape=owner.escape)
        else:
            formatter = SizedFormatter(self, self.max_size)
        is_format_map = value.__name__ == "format_map"

        def wrapper(*args: Any, **kwargs: Any) -> str:
            if is_format_map:
                if kwargs:
                    raise TypeError("format_map() takes no keyword arguments")
                if len(args) != 1:
                    raise TypeError(f"format_map() takes exactly one argument ({len(args)} given)")
                kwargs, args = args[0], ()
            return type(owner)(formatter.vformat(owner, args, kwargs))

        return update_wrapper(wrapper, value)

    def checked_concat(self, values: tuple[Any, ...]) -> str:
        self._tick()
        check_text(self.max_size, "a ~ result", *values)
        parts = [str(v) for v in values]
        check_size(sum(map(len, parts)), self.max_size, "a ~ result")
        return "".join(parts)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        self._tick()
        limit = self.max_size
        sized = (str, bytes, list, tuple)
        if operator == "**" and isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1:
            if right * abs(left).bit_length() > 64 * 1024:
                raise SecurityError("the result of ** would be too large")
        elif operator == "*":
            seq, count = (left, right) if isinstance(left, sized) else (right, left)
            if isinstance(seq, sized) and isinstance(count, int):
                _check_sequence(len(seq) * count, seq, limit, "a * result")
        elif operator == "+" and isinstance(left, sized) and isinstance(right, sized):
            _check_sequence(len(left) + len(right), left, limit, "a + result")
        elif operator == "%" and isinstance(left, str | bytes):
            text = left if isinstance(left, str) else left.decode("latin-1")
            check_size(percent_size(text, right, limit), limit, "a % result")
        return super().call_binop(context, operator, left, right)

    def call(self, context: Context, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        self._tick()
        target = getattr(obj, "__wrapped__", obj)  # the sandbox wraps str.format
        owner = getattr(target, "__self__", None)
        if not isinstance(owner, str | bytes):
            return super().call(context, obj, *args, **kwargs)
        args = self._check_method(owner, getattr(target, "__name__", ""), args, kwargs)
        result = super().call(context, obj, *args, **kwargs)
        if isinstance(result, str | bytes) and result is not owner:
            self._spend(len(result))
        return result

    def _check_method(self, owner: str | bytes, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Refuses a string method whose result would be over the limit; returns the arguments to call
        it with (``join``'s items, gathered once)."""
        limit = self.max_size
        what = f"{type(owner).__name__}.{name}"
        size = 0
        if name in _WIDTH_METHODS:
            check_ints(limit, *args, *kwargs.values())
        elif name == "join" and args:
            step = len(owner)
            items = collect(args[0], limit, size=lambda item: text_size(item, limit) + step, what=what)
            return (items, *args[1:])
        elif name == "replace" and len(args) >= 2:
            size = replace_size(owner, args[0], args[1], args[2] if len(args) > 2 else kwargs.get("count", -1))
        elif name == "expandtabs":
            size = expandtabs_size(owner, args[0] if args else kwargs.get("tabsize", 8))
        elif name == "translate" and isinstance(owner, str) and args:
            size = translate_size(owner, args[0], limit)
        check_size(size, limit, what)
        return args


def _check_sequence(size: int, seq: Any, limit: int, what: str) -> None:
    """Refuses a repeated or concatenated string over ``limit``, or a list or tuple over MAX_ITEMS."""
    check_size(size, limit, what)
    if isinstance(seq, list | tuple) and size > MAX_ITEMS:
        raise SecurityError(f"{what} with more than {MAX_ITEMS} items")
