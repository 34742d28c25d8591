"""The sandbox templates run in.

``Sandbox`` is Jinja2's ``ImmutableSandboxedEnvironment`` with these filters, without ``lipsum``, and
with size checks, before the call, wherever text can grow without output (estimates in
``injector.template.costs``): ``*``, ``+``, ``**``, ``%``, ``~``; ``str.format`` / ``format_map`` field by
field (nested widths, repeated fields); ``replace``, ``join``, ``expandtabs``, ``translate`` and the
padding methods; filters that make text of a container (``string``, ``tojson``…), ``format``,
``replace``, ``join``, ``indent``, ``center``, ``wordwrap`` (also its line count and word-splitting
time), ``batch``, ``slice`` and ``sum``; lists and tuples of more than a million items. A result
over the output limit is refused with a ``SecurityError`` naming ``limits.max_output_bytes``. Every
filter and call checks the time limit, and the new text filters and string methods return counts
toward the render's work budget. Every refusal of ours is a ``LimitError`` (a ``SecurityError``) whose
message names the operation and the limit, never a value.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Mapping
from functools import update_wrapper, wraps
from typing import Any

from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame, optimizeconst
from jinja2.filters import make_attrgetter
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from markupsafe import Markup

from injector.errors import RenderError
from injector.template.costs import (
    MAX_ITEMS,
    LimitError,
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
from injector.template.filters import FILTERS

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
        raise LimitError(f"the {name} filter: a count over {MAX_ITEMS} items")


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
    ``injector.template.costs``. ``tick`` is called at every call, filter, operator and ``~``: the renderer's
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
                    raise LimitError(
                        f"the sum filter: lists of more than {MAX_ITEMS} items in all, or too many lists"
                    )
                items.append(item)
            return sum_filter(environment, items, None, start)

        return wrapper

    def _load_template(self, name: str, globals: Any) -> Any:
        """``{% include %}``, ``{% import %}`` and ``{% extends %}`` have nothing to load: one file, one template."""
        raise RenderError("include, import and extends are not available: a template is one file")

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
                raise LimitError("the result of ** would be too large")
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
        raise LimitError(f"{what} with more than {MAX_ITEMS} items")

