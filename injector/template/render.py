"""Rendering: compile templates, find the references they name, render them against values the runner
fetched, within limits, and turn every failure into one redacted error. The template language itself
is in the sibling modules (values, filters, sandbox, costs); templates/README.md is the
user's guide to both.

A render runs against a ``lookup`` of base references the runner has already fetched, so it never
does I/O. A reference the lookup does not have yet is recorded in ``RenderResult.missing`` and the
render goes on with a placeholder (see ``filters.Pending``) to find more of them in one pass; as soon
as a placeholder would influence text, a branch or another reference, the render stops. The runner
fetches what was missing and renders again: one pass when every reference is a literal (``static_refs``
finds them before the first render), one more per level of references built from other secrets.

The environment is Jinja2's ``ImmutableSandboxedEnvironment`` with ``StrictUndefined``, autoescape off,
``keep_trailing_newline``, ``trim_blocks`` and ``lstrip_blocks`` (a ``{% if %}`` line leaves no blank
line, as in Ansible). No loader: ``{% include %}`` / ``{% import %}`` of other files are errors. Values
are data, never templates: a secret holding ``{{ 7*7 }}`` is written as is.

Limits (``LimitsConfig``): output over ``max_output_bytes`` stops the render while it is generated; so
does any intermediate value that would be larger (``*``, ``+``, ``**``, ``~``, ``%``, ``str.format``,
``replace``, ``join``, padding, ``indent``, ``wordwrap``…, estimated before the call: see
``injector.template.sandbox`` and ``injector.template.costs``), and more than ``max_output_bytes`` x 16 of text
in total (expression output, text captured by ``{% set %}`` blocks and macros, and the new text filters
and string methods return). Time over ``render_timeout`` is checked between output chunks and at every
call, filter and operator; a single call is bounded by the sandbox's range limit (100 000 items per
``range()``, 100 000 in all per render), a million items per list, the size limits above, and for
``wordwrap`` a cap on lines and on the cost of splitting long words.

Errors name the template (``templates[1] (app.env): /etc/injector/app.env.j2: line 3: …``), then say
what failed without any text derived from a value, by construction rather than by masking:

- an exception of injector's own (``RenderError``, ``NotFoundError``…, the sandbox's size limits,
  undefined names) keeps its message: those are built from references, key names and names that
  appear literally in the template (``CompiledTemplate.literals``); a reference, key or name built at
  render time, which may hold a value, is described as such instead of quoted;
- any other exception (``ValueError`` from ``int()``, ``KeyError`` from ``str.format``, Jinja's own
  ``SecurityError``…) is reported by its class only: its text may quote a value;
- the raised exception carries no ``__cause__`` or ``__context__``: the original exception and its
  traceback, which hold values, are dropped.

``env()`` never reads the injector's own credentials (``injector.credentials``).
"""

from __future__ import annotations

import logging
import os
import time
import traceback
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import wraps
from typing import TYPE_CHECKING, Any

from jinja2 import nodes
from jinja2.environment import Template
from jinja2.exceptions import SecurityError, TemplateRuntimeError, TemplateSyntaxError, UndefinedError
from jinja2.runtime import StrictUndefined, Undefined
from jinja2.sandbox import MAX_RANGE, safe_range
from jinja2.utils import missing, object_type_repr

from injector.credentials import is_credential
from injector.errors import ConfigError, InjectorError, RenderError, SourceError
from injector.redact import register_value
from injector.refs import Reference, Secret, parse_reference
from injector.template.costs import LimitError, check_text
from injector.template.sandbox import Sandbox
from injector.template.values import BUILT, LITERALS, Binary, Pending, PendingError, is_literal, to_template_value

if TYPE_CHECKING:
    from injector.config.model import LimitsConfig, TemplateConfig

__all__ = ["CompiledTemplate", "RenderResult", "Renderer"]

logger = logging.getLogger(__name__)

#: ``range()`` items one render may iterate over in all (each call is also capped at MAX_RANGE).
RANGE_BUDGET = MAX_RANGE
#: Expression output (including captured blocks and macro bodies) allowed per render, times max_output_bytes.
WORK_FACTOR = 16
_NO_DEFAULT: Any = object()
_PENDING = Pending()


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class CompiledTemplate:
    """A parsed template, ready to render any number of times. Hashable by identity."""

    template: TemplateConfig
    #: None for a ``secret:`` template, which is written as the value's bytes, untemplated.
    jinja: Template | None
    #: ``templates[i] (destination)``, the prefix of every message about this template.
    label: str
    #: Names, attributes, keywords and string constants written in the template: the only text of
    #: the render an error message may quote (besides references the config declares).
    literals: frozenset[str] = frozenset()
    #: The base references written literally in the template (``Renderer.static_refs``), read from
    #: its syntax tree when it was compiled; the tree itself is not kept (200 templates: ~0.6 MiB).
    static: frozenset[Reference] = frozenset()
    #: Why those could not be read (an invalid literal reference): ``static_refs`` raises it.
    static_problem: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RenderResult:
    #: The rendered file (UTF-8), or the raw bytes of a ``secret:`` template; b"" when ``missing``.
    content: bytes
    #: Base references (no ``#KEY``, no ``?refresh``) this render used, ``missing`` included.
    refs: frozenset[Reference]
    #: Base references the lookup did not have yet; when not empty, ``content`` means nothing.
    missing: frozenset[Reference] = frozenset()


@dataclass(slots=True, kw_only=True)
class _State:
    """What one render learns and spends; reached from Jinja hooks through ``_STATE``."""

    lookup: Callable[[Reference], Secret]
    deadline: float
    timeout: float
    refs: set[Reference] = field(default_factory=set)
    missing: set[Reference] = field(default_factory=set)
    #: The SourceError a lookup raised, which render() re-raises unchanged.
    source_error: SourceError | None = None
    #: Whether ``source_error`` is about a reference written in the template (or declared): its
    #: message may quote it. One built at render time may hold a value.
    source_error_literal: bool = False
    range_left: int = RANGE_BUDGET
    work_left: int = 0


_STATE: ContextVar[_State | None] = ContextVar("injector_render_state", default=None)


class Renderer:
    """Compiles and renders templates for one config (its ``secrets:`` names and ``limits:``)."""

    def __init__(
        self,
        *,
        secrets: Mapping[str, Reference],
        limits: LimitsConfig,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self._secrets = dict(secrets)
        self._limits = limits
        self._environ = environ
        env = Sandbox(
            max_size=limits.max_output_bytes,
            tick=_tick,
            spend=_spend,
            undefined=_Undefined,
            autoescape=False,
            keep_trailing_newline=True,
            trim_blocks=True,
            lstrip_blocks=True,
            finalize=self._finalize,
            cache_size=0,
        )
        env.globals.update(secret=self._secret, secrets=_Names(self), env=self._getenv, range=self._range)
        env.filters["b64decode"] = _registering(env.filters["b64decode"])
        env.filters["fromjson"] = _registering(env.filters["fromjson"])
        self._env = env

    # --- compile ----------------------------------------------------------------------------------

    def compile(self, template: TemplateConfig) -> CompiledTemplate:
        """Reads and parses ``template`` (its source file, its contents, or nothing for ``secret:``).

        A template with both ``source`` and ``contents`` is the source's text, read already
        (``injector validate`` on manifests: the file is a ConfigMap key, not on this disk).

        Raises:
            ConfigError: the source file does not exist (the config names a wrong path).
            RenderError: the source cannot be read, or a syntax error (with its line).
        """
        label = f"{template.where} ({template.destination})"
        if template.secret is not None:
            return CompiledTemplate(template=template, jinja=None, label=label)
        problem = ""
        text = template.contents or ""
        if template.source is not None and template.contents is None:
            try:
                text = template.source.read_text(encoding="utf-8")
            except (FileNotFoundError, NotADirectoryError):
                raise ConfigError(
                    f"{label}: template file not found: {template.source} "
                    "(relative sources resolve against the config file's folder)"
                ) from None
            except OSError as exc:
                problem = f"{label}: cannot read template {template.source}: {exc.strerror or type(exc).__name__}"
            except UnicodeDecodeError:
                problem = f"{label}: template {template.source} is not UTF-8 text"
        if not problem:
            try:
                ast = self._env.parse(text)
                jinja = self._env.from_string(ast)
            except TemplateSyntaxError as exc:
                problem = f"{_where(label, template, exc.lineno)}: {exc.message}"
            else:
                static, static_problem = self._literal_refs(ast, label, template)
                return CompiledTemplate(
                    template=template,
                    jinja=jinja,
                    label=label,
                    literals=_literals(ast),
                    static=static,
                    static_problem=static_problem,
                )
        raise RenderError(problem)  # outside the except blocks: no chained Jinja exception

    def static_refs(self, compiled: CompiledTemplate) -> frozenset[Reference]:
        """Returns the base references ``compiled`` names literally, found without rendering.

        ``secret("literal", key=literal…)``, ``secrets.NAME``, ``secrets["NAME"]`` and the ``secret:``
        of a raw template. References built at render time are not here; ``render`` reports them
        in ``missing``. A literal in a branch that never runs is here too.

        Raises:
            RenderError: a literal reference is invalid, or a ``secrets.NAME`` is not declared.
        """
        if compiled.template.secret is not None:
            return frozenset({compiled.template.secret.base})
        if compiled.static_problem is not None:
            raise RenderError(compiled.static_problem)
        return compiled.static

    def _literal_refs(
        self, ast: nodes.Template, label: str, template: TemplateConfig
    ) -> tuple[frozenset[Reference], str | None]:
        """The base references written literally in ``ast``, or the first invalid one's problem."""
        refs: set[Reference] = set()
        for node in ast.find_all((nodes.Call, nodes.Getattr, nodes.Getitem)):
            try:
                ref = self._static_ref(node)
            except RenderError as exc:
                return frozenset(), f"{_where(label, template, node.lineno)}: {exc}"
            if ref is not None:
                refs.add(ref.base)
        return frozenset(refs), None

    def _static_ref(self, node: nodes.Node) -> Reference | None:
        if isinstance(node, nodes.Call):
            if not (isinstance(node.node, nodes.Name) and node.node.name == "secret"):
                return None
            if len(node.args) != 1 or node.dyn_args is not None or node.dyn_kwargs is not None:
                return None
            try:
                text = node.args[0].as_const()
                params = {kw.key: kw.value.as_const() for kw in node.kwargs}
            except nodes.Impossible:
                return None
            return _parse(text, params) if isinstance(text, str) else None
        if isinstance(node, nodes.Getattr | nodes.Getitem):
            if not (isinstance(node.node, nodes.Name) and node.node.name == "secrets"):
                return None
            if isinstance(node, nodes.Getattr):
                return self._declared(node.attr)
            if isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
                return self._declared(node.arg.value)
        return None

    def _declared(self, name: str) -> Reference:
        if name not in self._secrets:
            names = ", ".join(sorted(self._secrets)) or "none declared"
            shown = f"secrets.{name}" if is_literal(name) or _STATE.get() is None else f"secrets[{BUILT}]"
            raise RenderError(f"{shown}: no such name in the config's secrets: ({names})")
        return self._secrets[name]

    # --- render -----------------------------------------------------------------------------------

    def render(self, compiled: CompiledTemplate, lookup: Callable[[Reference], Secret]) -> RenderResult:
        """Renders ``compiled`` with the values ``lookup`` returns for base references.

        ``lookup`` raises KeyError for a reference not fetched yet (it goes to ``missing``) or a
        SourceError, which propagates unchanged.

        Raises:
            RenderError: the template failed (message redacted, template and line named).
            NotFoundError: a key of a secret does not exist (names the reference and the keys).
            SourceError: whatever ``lookup`` raised.
        """
        if compiled.jinja is None:
            return self._render_raw(compiled, lookup)
        limits = self._limits
        state = _State(
            lookup=lookup,
            deadline=time.monotonic() + limits.render_timeout,
            timeout=limits.render_timeout,
            work_left=limits.max_output_bytes * WORK_FACTOR,
        )
        token = _STATE.set(state)
        literals = LITERALS.set(compiled.literals | self._secrets.keys())
        failure: InjectorError | None = None
        content = b""
        try:
            content = self._generate(compiled.jinja, state)
        except SourceError as exc:
            if exc is state.source_error and state.source_error_literal:
                raise  # the lookup's own error about a literal reference, unchanged: its exit code stays right
            failure = _describe(compiled, exc, lookup_error=exc is state.source_error)
        except Exception as exc:  # noqa: BLE001 -- every template failure becomes one error without values
            failure = _describe(compiled, exc)
        finally:
            _STATE.reset(token)
            LITERALS.reset(literals)
        refs = frozenset(state.refs)
        if state.missing:
            logger.debug("%s: %d reference(s) not fetched yet", compiled.label, len(state.missing))
            return RenderResult(content=b"", refs=refs, missing=frozenset(state.missing))
        if failure is not None:
            raise failure  # outside the except blocks: no __context__ holding the Jinja exception
        logger.debug("rendered %s: %d bytes from %d reference(s)", compiled.label, len(content), len(refs))
        return RenderResult(content=content, refs=refs)

    def _generate(self, template: Template, state: _State) -> bytes:
        limit = self._limits.max_output_bytes
        parts: list[bytes] = []
        size = 0
        chunks = template.generate()
        try:
            for chunk in chunks:
                data = chunk.encode("utf-8")
                size += len(data)
                if size > limit:
                    raise RenderError(f"the output is larger than limits.max_output_bytes ({limit} bytes)")
                parts.append(data)
                _tick(state)
        finally:
            close = getattr(chunks, "close", None)  # a generator: stop it where it is
            if close is not None:
                close()
        return b"".join(parts)

    def _render_raw(self, compiled: CompiledTemplate, lookup: Callable[[Reference], Secret]) -> RenderResult:
        ref = compiled.template.secret
        assert ref is not None  # noqa: S101 -- only called for secret: templates
        base = ref.base
        try:
            secret = lookup(base)
        except KeyError:
            return RenderResult(content=b"", refs=frozenset({base}), missing=frozenset({base}))
        problem: InjectorError | None = None
        if ref.key is not None:
            try:
                secret = secret.select(ref.key, ref=str(ref))
            except SourceError as exc:  # select's messages name keys, never values
                problem = type(exc)(f"{compiled.label}: {exc}", ref=exc.ref)
        if problem is None:
            value = secret.reveal()
            if isinstance(value, Mapping):
                keys = sorted(str(k) for k in value)
                problem = RenderError(
                    f"{compiled.label}: secret {ref} is a mapping (keys: {', '.join(keys) or 'none'}); a secret: "
                    f"template writes one value, so select one with #KEY, e.g. {ref.canonical()}#{(keys or ['KEY'])[0]}"
                )
            else:
                content = value.encode("utf-8") if isinstance(value, str) else bytes(value)
                if len(content) > self._limits.max_output_bytes:
                    problem = RenderError(
                        f"{compiled.label}: {ref} is larger than limits.max_output_bytes "
                        f"({self._limits.max_output_bytes} bytes)"
                    )
                else:
                    logger.debug("rendered %s: %d bytes from %s", compiled.label, len(content), base)
                    return RenderResult(content=content, refs=frozenset({base}))
        raise problem

    # --- what templates call ------------------------------------------------------------------------

    def _secret(self, ref: object, **params: object) -> Any:
        """``secret(REF, **params)``: a key reference gives its value, a whole one a mapping or string."""
        state = _current()
        if isinstance(ref, Pending) or any(isinstance(v, Pending) for v in params.values()):
            raise PendingError("a reference built from a value that is not fetched yet")
        if isinstance(ref, Undefined):
            str(ref)  # raises the UndefinedError that names the variable
        if not isinstance(ref, str):
            raise RenderError(
                f"secret() expects a reference such as vault:secret/app#password, got {type(ref).__name__}"
            )
        literal = is_literal(ref) and all(map(_literal_param, params.values()))
        return self._resolve(state, _parse(ref, params, literal=literal), literal=literal)

    def _resolve(self, state: _State, ref: Reference, *, literal: bool) -> Any:
        """Looks ``ref`` up; ``literal`` says whether its text may be quoted (else it may hold a value)."""
        base = ref.base
        state.refs.add(base)
        try:
            secret = state.lookup(base)
        except KeyError:
            state.missing.add(base)
            return _PENDING
        except SourceError as exc:
            state.source_error, state.source_error_literal = exc, literal
            raise
        label = str(ref) if literal else BUILT
        if ref.key is not None:
            try:
                secret = secret.select(ref.key, ref=str(ref))
            except SourceError as exc:
                if literal:
                    raise
                problem = type(exc)(f"{BUILT}: its key was not found ({type(exc).__name__})")
                raise problem from None
        return to_template_value(secret.reveal(), label=label, parse_json=ref.key is None)

    def _named(self, name: str) -> Any:
        """``secrets.NAME`` / ``secrets["NAME"]``: ``secret()`` of a reference the config declares."""
        return self._resolve(_current(), self._declared(name), literal=True)

    def _getenv(self, name: object, default: object = _NO_DEFAULT) -> Any:
        """``env(NAME[, default])``: the injector's environment variable, read at render time."""
        _current()
        if not isinstance(name, str):
            raise RenderError(f"env() expects a variable name, got {type(name).__name__}")
        if is_credential(name):
            raise RenderError(
                f"env({name!r}): {name} holds the injector's own credentials or settings, which templates cannot read"
            )
        environ = os.environ if self._environ is None else self._environ
        value = environ.get(name)
        if value is None:
            if default is _NO_DEFAULT:
                shown = repr(name) if is_literal(name) else BUILT
                raise RenderError(f"env({shown}): the variable is not set; give a default: env({shown}, '…')")
            return default
        return value

    def _range(self, *args: int) -> range:
        rng = safe_range(*args)
        state = _STATE.get()
        if state is not None:
            state.range_left -= len(rng)
            if state.range_left < 0:
                raise RenderError(f"range(): more than {RANGE_BUDGET} items in one render")
        return rng

    def _finalize(self, value: Any) -> Any:
        """Turns every ``{{ expression }}`` into text: strict about null, bytes and size."""
        if isinstance(value, Pending):
            return ""
        if value is None:
            raise RenderError("an expression printed null (None); use | default('…', true) or .get(key, '…')")
        if isinstance(value, bytes) and not isinstance(value, Binary):
            value = to_template_value(value, label="bytes")
        if not isinstance(value, str):
            check_text(self._limits.max_output_bytes, "printing this value", value)
        text = value if isinstance(value, str) else str(value)
        _tick()
        _spend(len(text))
        return text


class _OwnUndefinedError(UndefinedError):
    """An undefined name, attribute or element; the message quotes only names written in the template."""


class _OwnSecurityError(SecurityError):
    """The sandbox refused an attribute; the message quotes it only when written in the template."""


class _Undefined(StrictUndefined):
    """StrictUndefined whose errors are injector's own: a name built at render time is not quoted."""

    __slots__ = ()

    def __init__(
        self,
        hint: str | None = None,
        obj: Any = missing,
        name: str | None = None,
        exc: type[TemplateRuntimeError] = UndefinedError,
    ) -> None:
        super().__init__(hint, obj, name, _OwnSecurityError if issubclass(exc, SecurityError) else _OwnUndefinedError)

    @property
    def _undefined_message(self) -> str:
        name = self._undefined_name
        shown = repr(name) if is_literal(name) else BUILT
        if self._undefined_exception is _OwnSecurityError:
            return f"access to attribute {shown} of a {type(self._undefined_obj).__name__} object is unsafe"
        if self._undefined_obj is missing:
            return f"{shown} is undefined"
        kind = "attribute" if isinstance(name, str) else "element"
        return f"{object_type_repr(self._undefined_obj)!r} has no {kind} {shown}"


class _Names:
    """The ``secrets`` global: ``secrets.NAME`` and ``secrets["NAME"]``."""

    __slots__ = ("_renderer",)

    def __init__(self, renderer: Renderer) -> None:
        self._renderer = renderer

    def __getattr__(self, name: str) -> Any:
        # AttributeError sends Jinja to __getitem__, which names the declared secrets.
        if name.startswith("_") or name not in self._renderer._secrets:
            raise AttributeError(name)
        return self._renderer._named(name)

    def __getitem__(self, name: object) -> Any:
        if isinstance(name, Pending):
            raise PendingError("a secret name built from a value that is not fetched yet")
        return self._renderer._named(str(name))

    def __contains__(self, name: object) -> bool:
        return name in self._renderer._secrets

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._renderer._secrets))

    def __repr__(self) -> str:
        return f"<secrets: {', '.join(sorted(self._renderer._secrets))}>"


def _current() -> _State:
    state = _STATE.get()
    if state is None:  # called outside render(), e.g. while Jinja folds constants at compile time
        raise RenderError("secret(), secrets and env() are only available while rendering")
    return state


def _tick(state: _State | None = None) -> None:
    state = state or _STATE.get()
    if state is not None and time.monotonic() > state.deadline:
        raise RenderError(f"the render took longer than limits.render_timeout ({state.timeout:g}s)")


def _spend(size: int) -> None:
    """Counts ``size`` characters of new text against the render's work budget."""
    state = _STATE.get()
    if state is not None:
        state.work_left -= size
        if state.work_left < 0:
            raise RenderError(
                f"the template produced more than {WORK_FACTOR} x limits.max_output_bytes of text "
                "(counting {% set %} blocks, macros and the results of filters and string methods)"
            )


def _parse(text: str, params: Mapping[str, object], *, literal: bool = True) -> Reference:
    """Parses ``text`` with ``params`` merged into its ``?`` parameters (validated by parse_reference).

    The error quotes the reference only when it is ``literal`` (written in the template).
    """
    try:
        ref = parse_reference(text)
        if params:
            extra = urllib.parse.urlencode([(k, _param_text(k, v)) for k, v in params.items()])
            ref = parse_reference(f"{ref.canonical()}{'&' if ref.params else '?'}{extra}")
    except ConfigError as exc:
        message = str(exc) if literal else f"{BUILT} is not a valid reference"
    else:
        return ref
    raise RenderError(message)


def _literal_param(value: object) -> bool:
    if isinstance(value, list | tuple):
        return all(map(_literal_param, value))
    return isinstance(value, bool) or is_literal(value if isinstance(value, str) else str(value))


def _literals(ast: nodes.Template) -> frozenset[str]:
    """The names, attributes, keyword names and constants (as text) written in ``ast``."""
    found: set[str] = set()
    for node in ast.find_all((nodes.Const, nodes.Name, nodes.Getattr, nodes.Keyword)):
        if isinstance(node, nodes.Const):
            if isinstance(node.value, str | int | float) and not isinstance(node.value, bool):
                found.add(str(node.value))
        elif isinstance(node, nodes.Name):
            found.add(node.name)
        elif isinstance(node, nodes.Getattr):
            found.add(node.attr)
        elif isinstance(node, nodes.Keyword):
            found.add(node.key)
    return frozenset(found)


def _param_text(name: str, value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    if isinstance(value, list | tuple) and all(isinstance(v, str | int) for v in value):
        return ",".join(str(v) for v in value)
    raise RenderError(f"secret(): parameter {name} must be a string, a number or a list of strings")


def _where(label: str, template: TemplateConfig, line: int | None) -> str:
    parts = [label]
    if template.source is not None:
        parts.append(str(template.source))
    if line:
        parts.append(f"line {line}")
    return ": ".join(parts)


def _describe(compiled: CompiledTemplate, exc: BaseException, *, lookup_error: bool = False) -> InjectorError:
    """Returns the error to raise for ``exc``: the template, the line, and what failed, without values.

    ``lookup_error``: ``exc`` is a backend's error about a reference built at render time.
    """
    line = None
    for frame, lineno in traceback.walk_tb(exc.__traceback__):
        if frame.f_code.co_filename == "<template>":
            line = lineno
    where = _where(compiled.label, compiled.template, line)
    if isinstance(exc, SourceError):
        # A backend's message about a reference built from values may quote it; ours (a missing key)
        # quote only literal references and keys. Either way the class, and so the exit code, stays.
        text = f"{BUILT} could not be fetched ({type(exc).__name__})" if lookup_error else str(exc)
        return type(exc)(f"{where}: {text}", ref=None if lookup_error else exc.ref)
    if isinstance(exc, InjectorError | LimitError | _OwnUndefinedError | _OwnSecurityError):
        message = str(exc)  # built by injector from references, key names and literals only
        if isinstance(exc, UndefinedError):
            message += " (use | default(…) for an optional variable)"
        elif isinstance(exc, SecurityError):
            message = f"blocked by the sandbox: {message}"
    elif isinstance(exc, SecurityError):
        message = "blocked by the sandbox (SecurityError)"
    elif isinstance(exc, RecursionError):
        message = "recursion too deep (a macro that calls itself without end?)"
    elif isinstance(exc, MemoryError):
        message = "out of memory"
    else:
        message = f"{type(exc).__name__} (its text is not shown: it may quote a value)"
    return RenderError(f"{where}: {message}")


def _registering(func: Callable[..., Any]) -> Callable[..., Any]:
    """Wraps a filter whose output is a new secret value (b64decode, fromjson): the log filter scrubs it."""

    @wraps(func)
    def wrapper(value: Any, *args: Any, **kwargs: Any) -> Any:
        result = func(value, *args, **kwargs)
        if not isinstance(result, Pending):
            register_value(result)
        return result

    return wrapper
