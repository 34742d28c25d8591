"""The filters injector adds to Jinja2, each also listed in templates/README.md.

Filters (``FILTERS``), each also listed in templates/README.md:

``b64encode``, ``b64decode``, ``tojson``, ``fromjson``, ``toyaml``, ``shell_quote``,
``dotenv_quote``, ``urlquote``, and strict ``int`` / ``float`` (Jinja's return 0 on bad input).
Filters raise ``RenderError`` with messages that never quote the value.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import shlex
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any

from injector.errors import RenderError
from injector.template.values import Binary, Pending, to_plain, to_template_value

_NO_DEFAULT: Any = object()


def _as_bytes(value: Any, name: str) -> bytes:
    if isinstance(value, bytes):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8")
    raise RenderError(f"{name} expects a string or bytes, got {_kind(value)}; select a key first")


def _kind(value: Any) -> str:
    """``a mapping``, ``a str`` …: what a message may say about a value (its type, never its text)."""
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
    return to_template_value(decoded, label="b64decode", named_keys=False)


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
    return to_template_value(parsed, label="fromjson", named_keys=False)


@functools.cache
def _block_dumper() -> Any:
    """PyYAML's safe dumper with block style and multi-line strings (certificates, keys) as ``|``
    literal blocks. Made at the first ``toyaml``: a sidecar whose templates never call it does not
    import PyYAML (``injector.config.document``)."""
    import yaml

    class BlockDumper(yaml.SafeDumper):
        pass

    def represent_str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|" if "\n" in data else None)

    BlockDumper.add_representer(str, represent_str)
    return BlockDumper


_WIDE = 2**31


def toyaml(value: Any, indent: int = 2) -> Any:
    """Returns YAML without a trailing newline.

    A mapping or list becomes a block (pipe it through ``| indent(N)`` to nest it); a string becomes
    one double-quoted scalar (so ``no``, ``1.0`` or a multi-line key stay strings on one line); a
    number, boolean or null becomes its YAML literal.
    """
    if isinstance(value, Pending):
        return value
    import yaml

    plain = to_plain(value)
    if isinstance(plain, str):
        text = yaml.dump(plain, Dumper=yaml.SafeDumper, default_style='"', width=_WIDE, allow_unicode=True)
    elif plain is None or isinstance(plain, bool | int | float):
        return json.dumps(plain)
    else:
        text = yaml.dump(
            plain,
            Dumper=_block_dumper(),
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
    except (TypeError, ValueError):
        pass
    if base == 10:
        try:
            return int(float(value))
        except (TypeError, ValueError, OverflowError):
            pass
    if default is not _NO_DEFAULT:
        return default
    raise RenderError(f"int: {_kind(value)} that is not an integer in base {base}; give a default: int(default=0)")


def strict_float(value: Any, default: Any = _NO_DEFAULT) -> Any:
    """``float`` that fails on bad input instead of returning 0.0 (unless a default is given)."""
    if isinstance(value, Pending):
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        if default is not _NO_DEFAULT:
            return default
    raise RenderError(f"float: {_kind(value)} that is not a number; give a default: float(default=0)")


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
