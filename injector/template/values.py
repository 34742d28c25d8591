"""What a template sees for a secret value: the value types, and the plain forms json and yaml take.


Value types (``to_template_value``):

- ``SecretMap``: a ``dict`` for a whole secret that is a mapping (KV data, a JSON-object string,
  SSM by path). ``str()`` is compact JSON; a missing key (``.pasword`` or ``["pasword"]``) raises
  ``NotFoundError`` naming the reference and the keys that exist. ``.get(key, default)`` is the
  explicit way to read an optional key.
- ``SecretList``: a ``list`` inside a secret; ``str()`` is compact JSON too.
- ``Binary``: ``bytes`` that are not UTF-8. Printing one, or using it as text, raises
  ``RenderError`` saying to use ``| b64encode``; a ``secret:`` template writes raw bytes instead.
- ``NotIssued``: what ``render --dry-run`` gives a template for a reference it did not fetch because
  fetching would issue something (dynamic credentials, a certificate): the text ``NOT_ISSUED``,
  which any key or attribute of it also gives.
- ``Pending``: a reference the runner has not fetched yet. It absorbs ``.attr`` / ``[key]`` and
  prints as nothing, but any other use (text, comparison, truth, iteration) raises
  ``PendingError``, which stops the render: a value built from a pending one must never become a
  reference, a branch or a file.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any, NoReturn

from injector.errors import NotFoundError, RenderError
from injector.redact import escape_controls

#: What a message says instead of a reference, key or name built at render time, which may hold a value.
BUILT = "<built at render time>"


#: Names, attributes, keywords and string constants written in the template being rendered (set by
#: ``Renderer.render``): the only render-time text a message may quote.
LITERALS: ContextVar[frozenset[str]] = ContextVar("injector_template_literals", default=frozenset())


def is_literal(text: object) -> bool:
    """Whether ``text`` is written literally in the template being rendered (so it is no value)."""
    return isinstance(text, str) and text in LITERALS.get()


class PendingError(Exception):
    """A value that is not fetched yet was used for more than printing; the render stops here.

    Deliberately not a LookupError/TypeError/AttributeError: Jinja swallows those in attribute
    lookups, and this one must reach the renderer.
    """


class SecretMap(dict[str, Any]):
    """A whole secret that is a mapping; see the module docstring."""

    __slots__ = ("_label", "_named_keys")

    def __init__(self, data: Mapping[str, Any], *, label: str, named_keys: bool = True) -> None:
        super().__init__()
        self._label = label
        self._named_keys = named_keys
        for key, value in data.items():
            name = escape_controls(str(key))  # a key name is printed in messages: one line, always
            sub = f"{label}.{name}" if "#" in label else f"{label}#{name}"
            self[str(key)] = to_template_value(value, label=sub if named_keys else label, named_keys=named_keys)

    def __missing__(self, key: object) -> NoReturn:
        # The key is quoted only when the template has it literally; one built at render time may be
        # a value. The keys are listed only for a secret's own keys (names), not for parsed values.
        shown = repr(key) if is_literal(key) else BUILT
        keys = f" (keys: {escape_controls(', '.join(sorted(self))) or 'none'})" if self._named_keys else ""
        raise NotFoundError(f"{self._label}: key {shown} not found{keys}", ref=self._label)

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


class NotIssued(str):
    """A dry run's stand-in for a reference it did not fetch; see the module docstring."""

    __slots__ = ()

    def __new__(cls) -> NotIssued:
        return super().__new__(cls, "NOT_ISSUED")

    def __getattr__(self, name: str) -> NotIssued:
        if name.startswith("_"):
            raise AttributeError(name)
        return self

    def __getitem__(self, key: object) -> Any:
        return self if isinstance(key, str) else str.__getitem__(self, key)  # type: ignore[index]


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


def to_template_value(value: Any, *, label: str, parse_json: bool = False, named_keys: bool = True) -> Any:
    """Returns what a template sees for a revealed secret value.

    Args:
        label: the log-safe reference text, for missing-key messages.
        parse_json: True for a whole-secret reference: a JSON-object string becomes a mapping.
        named_keys: False for a mapping parsed out of a value (``fromjson``): its keys are data, not
            names, and a missing-key message does not list them.
    """
    if isinstance(value, Mapping):
        return SecretMap(value, label=label, named_keys=named_keys)
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
        return SecretList(to_template_value(item, label=label, named_keys=named_keys) for item in value)
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

